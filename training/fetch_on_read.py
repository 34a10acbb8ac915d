"""A checkpoint at a URL loaded by fetching only the files each rank reads.

A checkpoint's model folder holds every rank's shards (`__R_N.distcp`). Copying the whole folder to
every machine before a resume costs each machine the whole checkpoint: at 67B with AdamW, about
14 bytes a parameter, nearly a terabyte per machine per resume, though a rank reads only its
tensor and pipeline slice of the weights and, with the distributed optimizer, its share of the
optimizer state. Here a load copies the folder's other files first (`.metadata`, `metadata.json`,
`common.pt`: `download_common`, once per staging folder), then each rank, as
torch.distributed.checkpoint plans its reads, fetches the files its plan reads and nothing else:
the storage reader's `read_data` learns, from the checkpoint's own metadata, which file each read
item is in. Ranks sharing the folder fetch each file once (a lock per file); a file is renamed into
place only when whole.

    download_common(url / "model", local / "model")                # once per folder
    with fetched_reads(local / "model", url / "model") as fetched:
        state = load_sharded(sharded, local / "model")        # fetched: the files this rank fetched
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from crawlmill.files import AnyPath, as_path, list_files

from .runstore import download

SHARD_FILE = re.compile(r"__\d+_\d+\.distcp")  # a rank's tensors (torch.distributed.checkpoint's name)


def download_common(remote: AnyPath, local: Path) -> None:
    """Every file of the model folder `remote` but the ranks' shards into `local`: the metadata a
    load reads before its plan, and the common state (which files these are varies by version)."""
    for path in list_files(remote):
        if not SHARD_FILE.fullmatch(path.name):
            download(path, local / path.name)


def fetch_once(remote: AnyPath, local: Path) -> bool:
    """`remote` at `local` unless it is there already (another rank sharing the folder fetched it);
    whether this call fetched it. Downloaded under a temporary name and renamed when whole, with a
    lock file beside it held meanwhile, so ranks that need it at once download it once."""
    local.parent.mkdir(parents=True, exist_ok=True)
    with open(local.parent / f".{local.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if local.exists():
            return False
        partial = local.parent / f".{local.name}.part"
        download(remote, partial)
        os.replace(partial, local)
        return True


@contextlib.contextmanager
def fetched_reads(local: Path, remote: AnyPath) -> Iterator[list[str]]:
    """Within the block, a torch.distributed.checkpoint load from the folder `local` first fetches,
    from the folder `remote`, each file its read plan needs (fetch_once). Yields the names of the
    files this process fetched, filled as it loads. Loads of other folders are left alone."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    fetched: list[str] = []
    read_data = FileSystemReader.read_data
    target = Path(local).resolve()

    def fetching_read_data(reader: FileSystemReader, plan: Any, planner: Any) -> Any:
        if Path(str(reader.path)).resolve() == target:
            for name in sorted({reader.storage_data[item.storage_index].relative_path for item in plan.items}):
                if not (target / name).resolve().is_relative_to(target):  # names come from a file in the bucket
                    raise ValueError(f"{remote}: the checkpoint's metadata names the file {name!r}, outside its folder; refused")
                if fetch_once(as_path(remote) / name, target / name):
                    fetched.append(name)
        return read_data(reader, plan, planner)

    # The narrowest place: Megatron's strategies make their reader inside load (0.16 and 0.19 alike,
    # FileSystemReader or its CachedMetadata subclass), and read_data is torch's, where the plan is known.
    with mock.patch.object(FileSystemReader, "read_data", fetching_read_data):
        yield fetched
