"""A checkpoint at a URL loaded by fetching only the bytes each rank reads.

A checkpoint's model folder holds every rank's shards (`__R_N.distcp`). Copying the whole folder to
every machine before a resume costs each machine the whole checkpoint: at 67B with AdamW, about
14 bytes a parameter, nearly a terabyte per machine per resume, though a rank reads only its
tensor and pipeline slice of the weights and, with the distributed optimizer, its share of the
optimizer state. Whole files would not do much better: the fully parallel save spreads each
slice's weights over the files of every data-parallel rank, beside their optimizer shards.

Here a load copies the folder's other files first (`.metadata`, `metadata.json`, `common.pt`:
`download_common`, once per staging folder); then each rank, as torch.distributed.checkpoint plans
its reads, fetches the byte ranges its plan reads (the checkpoint's own metadata says where each
read item is: file, offset, length) with ranged GETs, into a local file at the same offsets (sparse
where the file system keeps holes), where torch then reads them as from a whole copy. Ranks sharing the folder fetch each range once
(a lock per file and a list of the ranges it holds); an object shorter than its metadata says is
an EOFError (a damaged checkpoint: the resume goes on to the one before).

    download_common(url / "model", local / "model")                # once per folder
    with fetched_reads(local / "model", url / "model") as fetched:
        state = load_sharded(sharded, local / "model")        # fetched: (file, start, end) this rank got
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from crawlmill.files import AnyPath, as_path, fs_and_path, list_files, temporary_path

from .runstore import download

SHARD_FILE = re.compile(r"__\d+_\d+\.distcp")  # a rank's tensors (torch.distributed.checkpoint's name)
PIECE = 64 << 20  # bytes per ranged GET; AT_ONCE of them bound the memory a rank's fetch holds (512 MiB)
AT_ONCE = 8


def download_common(remote: AnyPath, local: Path) -> None:
    """Every file of the model folder `remote` but the ranks' shards into `local`: the metadata a
    load reads before its plan, and the common state (which files these are varies by version)."""
    for path in list_files(remote):
        if not SHARD_FILE.fullmatch(path.name):
            download(path, local / path.name)


def fetch_once(remote: AnyPath, local: Path) -> bool:
    """The whole small object `remote` at `local` unless it is there already (another rank sharing
    the folder fetched it); whether this call fetched it. Downloaded under a temporary name and
    renamed when whole, a lock file beside it held meanwhile."""
    local.parent.mkdir(parents=True, exist_ok=True)
    with open(local.parent / f".{local.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if local.exists():
            return False
        partial = temporary_path(local)  # a name of its own: a lock that a file system does not share between machines must not mix two downloads
        download(remote, partial)
        os.replace(partial, local)
        return True


def merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[start, end) ranges, sorted, touching and overlapping ones joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _missing(wanted: list[tuple[int, int]], held: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `wanted` (merged) outside `held` (merged)."""
    out = []
    for start, end in wanted:
        for held_start, held_end in held:
            if held_end <= start or held_start >= end:
                continue
            if held_start > start:
                out.append((start, held_start))
            start = max(start, held_end)
        if start < end:
            out.append((start, end))
    return out


def fetch_ranges(remote: AnyPath, local: Path, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The byte ranges `ranges` of the object `remote` into the file `local` at the same offsets
    (sparse: nothing else is written), but those already there; returns the ranges this call
    fetched. A lock file beside it is held meanwhile and `.NAME.ranges` lists what it holds, so
    ranks sharing the folder fetch each range once."""
    local.parent.mkdir(parents=True, exist_ok=True)
    listing = local.parent / f".{local.name}.ranges"
    with open(local.parent / f".{local.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        held = [tuple(r) for r in json.loads(listing.read_text())] if listing.exists() else []
        missing = _missing(merged(ranges), held)
        if not missing:
            return []
        fs, key = fs_and_path(remote)
        size = fs.size(key)
        if missing[-1][1] > size:
            raise EOFError(f"{remote}: {size:,} bytes, shorter than the checkpoint's metadata says ({missing[-1][1]:,}): cut short")
        pieces = [(s, min(s + PIECE, end)) for start, end in missing for s in range(start, end, PIECE)]
        handle = os.open(local, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            for at in range(0, len(pieces), AT_ONCE):
                group = pieces[at : at + AT_ONCE]
                for (start, end), data in zip(group, fs.cat_ranges([key] * len(group), [s for s, _ in group], [e for _, e in group], on_error="raise"), strict=True):
                    if len(data) != end - start:
                        raise EOFError(f"{remote}: bytes {start:,}-{end:,} came back as {len(data):,}: cut short")
                    os.pwrite(handle, data, start)
        finally:
            os.close(handle)
        partial = temporary_path(listing)
        partial.write_text(json.dumps(merged([*held, *missing])))
        os.replace(partial, listing)
        return missing


@contextlib.contextmanager
def fetched_reads(local: Path, remote: AnyPath) -> Iterator[list[tuple[str, int, int]]]:
    """Within the block, a torch.distributed.checkpoint load from the folder `local` first fetches,
    from the folder `remote`, the byte ranges its read plan needs (fetch_ranges). Yields the (file,
    start, end) ranges this process fetched, filled as it loads. Loads of other folders are left alone."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    fetched: list[tuple[str, int, int]] = []
    read_data = FileSystemReader.read_data
    target = Path(local).resolve()

    def fetching_read_data(reader: FileSystemReader, plan: Any, planner: Any) -> Any:
        if Path(str(reader.path)).resolve() == target:
            wanted: dict[str, list[tuple[int, int]]] = {}
            for item in plan.items:
                info = reader.storage_data[item.storage_index]
                wanted.setdefault(info.relative_path, []).append((info.offset, info.offset + info.length))
            for name, ranges in sorted(wanted.items()):
                if not (target / name).resolve().is_relative_to(target):  # names come from a file in the bucket
                    raise ValueError(f"{remote}: the checkpoint's metadata names the file {name!r}, outside its folder; refused")
                fetched.extend((name, start, end) for start, end in fetch_ranges(as_path(remote) / name, target / name, ranges))
        return read_data(reader, plan, planner)

    # The narrowest place: Megatron's strategies make their reader inside load (0.16 and 0.19 alike,
    # FileSystemReader or its CachedMetadata subclass), and read_data is torch's, where the plan is known.
    with mock.patch.object(FileSystemReader, "read_data", fetching_read_data):
        yield fetched
