"""Where a training run reads its shards and keeps its folder: local paths, or fsspec URLs
(`s3://bucket/run`, `gs://...`) through crawlmill.files.

Shards at a URL: Megatron's IndexedDataset maps local files, so each machine copies the files a
run reads of each shard folder (manifest.json and every blended shard's .bin and .idx, not the
docs tables) into its cache ($CRAWLMILL_CACHE/remote/KEY, crawlmill.local_cache.local_copy): once per
machine and content version (the key holds every file's ETag, so a repacked folder is fetched
again), under a file lock so that the local ranks starting together download it once.

A run folder at a URL: every rank works in a local staging folder, $CRAWLMILL_CACHE/runs/KEY
(KEY from the URL), exactly as in a local run (run.json, log.jsonl, tensorboard/, the GPTDataset
index cache, checkpoints being written), and the run's files are uploaded to the URL: each
checkpoint as checkpoint.py describes (every rank's file, then meta.json, then the marker
`_COMPLETE`), rank 0's run.json, log.jsonl and tensorboard/ after each checkpoint is complete and
at the end, and a profiled rank's profile/ files by that rank once written (ranks on other machines
profile into their own staging folders). The remote log is the truth: a run into a URL starts from its log.jsonl (as a
local run appends to its own), so a resume on another machine continues the same log.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crawlmill.files import AnyPath, as_path, fs_and_path, is_url, list_files, remove_file
from crawlmill.local_cache import cache_root, local_copy
from crawlmill.shards.manifest import MANIFEST

from .runlog import LOG_FILE, RUN_FILE

TENSORBOARD = "tensorboard"
PROFILE = "profile"  # perf.StepProfiler's traces and tables


def shard_names(manifest: dict[str, Any]) -> list[str]:
    """The files of a shard folder that training reads: the manifest, each blended shard's .bin and .idx."""
    return [MANIFEST] + [f"{prefix}.{kind}" for prefix in manifest["blend"]["prefixes"] for kind in ("bin", "idx")]


def local_shards(folder: str, manifest: dict[str, Any]) -> Path:
    """A local folder with what training reads of shard folder `folder`: the folder itself when
    local, else the per-machine cached copy (module docstring)."""
    if not is_url(folder):
        return Path(folder)
    return local_copy(folder, shard_names(manifest))


def local_file(path: str) -> Path:
    """A local copy of one file (a tokenizer.json the manifest names by URL); the path when local."""
    return local_copy(path) if is_url(path) else Path(path)


def run_location(run_dir: str | os.PathLike) -> str:
    """How a run folder is named to workers and in records: the absolute local path, or the URL."""
    return str(run_dir) if is_url(run_dir) else str(Path(run_dir).resolve())


class RunStore:
    """A run folder: `local` is where this machine's ranks write; `remote` the URL's path, or None
    for a local run (then nothing is uploaded)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        if is_url(run_dir):
            self.remote: AnyPath | None = as_path(str(run_dir))
            key = hashlib.sha256(str(self.remote).encode()).hexdigest()[:16]
            self.local = cache_root() / "runs" / f"{key}-{self.remote.name}"
        else:
            self.remote, self.local = None, Path(run_dir)
        self._pushed: dict[str, tuple[int, int]] = {}  # tensorboard/ and profile/ files uploaded: (size, mtime)

    @property
    def name(self) -> str:
        """The run folder as users named it (the URL, or the local path)."""
        return str(self.remote) if self.remote is not None else str(self.local)

    def pull_log(self) -> None:
        """Rank 0, before opening the log: make the local log.jsonl the remote one (none if the
        URL has none: a staging folder's stale log from an earlier run is dropped, and its
        TensorBoard events, which push_logs would otherwise upload into the new run's)."""
        if self.remote is None:
            return
        self.local.mkdir(parents=True, exist_ok=True)
        remote_log = self.remote / LOG_FILE
        remove_file(self.local / LOG_FILE)
        if remote_log.exists():
            fs, key = fs_and_path(remote_log)
            fs.get_file(key, str(self.local / LOG_FILE))
        else:
            shutil.rmtree(self.local / TENSORBOARD, ignore_errors=True)

    def push_logs(self) -> None:
        """Rank 0: upload run.json, log.jsonl, and the files of tensorboard/ that changed since the
        last push (each file whole: an object store has no append)."""
        if self.remote is None:
            return
        for name in (RUN_FILE, LOG_FILE):
            if (self.local / name).is_file():
                upload(self.local / name, self.remote / name)
        for path in (p for p in sorted((self.local / TENSORBOARD).rglob("*")) if p.is_file()):
            name, stat = str(path.relative_to(self.local)), path.stat()
            if self._pushed.get(name) != (stat.st_size, stat.st_mtime_ns):
                upload(path, self.remote / name)
                self._pushed[name] = (stat.st_size, stat.st_mtime_ns)

    def push_files(self, paths: list[Path]) -> None:
        """Upload files of the staging folder (a rank's profile) to the same place under the URL."""
        if self.remote is None:
            return
        for path in paths:
            upload(path, self.remote / str(path.relative_to(self.local)))


DOWNLOADED = ".resume-"  # a checkpoint's copy for a load: .resume-step-N-TOKEN-LEADER (that load's token, the rank that made it), and its .lock


@contextlib.contextmanager
def held_copy(folder: Path) -> Iterator[Path]:
    """`folder` (a load's copy of a checkpoint) for the duration of the block, removed after it; its
    lock file held all along, so that remove_leftover_copies leaves it alone (another process on the
    machine starting while this one loads)."""
    lock = folder.parent / f"{folder.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock, "w")  # noqa: SIM115 - closed below, or kept open (locked) for the block
        fcntl.flock(handle, fcntl.LOCK_EX)
        if os.fstat(handle.fileno()).st_nlink:  # not unlinked by a cleanup between the open and the lock
            break
        handle.close()
    with handle:
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)


def remove_leftover_copies(root: Path) -> None:
    """The copies of killed loads in `root` (no process holds their lock), with their locks."""
    for lock in root.glob(f"{DOWNLOADED}*.lock"):
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live load's
                continue
            shutil.rmtree(lock.with_suffix(""), ignore_errors=True)
            lock.unlink(missing_ok=True)
    for folder in root.glob(f"{DOWNLOADED}*"):  # one without a lock: not a load's of this version
        if folder.is_dir() and not folder.with_name(f"{folder.name}.lock").exists():
            shutil.rmtree(folder, ignore_errors=True)


def upload(local: Path, remote: AnyPath) -> None:
    """One local file to a URL (s3fs: one PUT, or a multipart upload visible only when complete)."""
    fs, key = fs_and_path(remote)
    fs.put_file(str(local), key)


def download(remote: AnyPath, local: Path) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    fs, key = fs_and_path(remote)
    fs.get_file(key, str(local))


def complete_folders(root: AnyPath, marker: str) -> list[AnyPath]:
    """The folders `root/step-*` that hold `marker` (a remote checkpoint is complete only then), oldest first."""
    return sorted((p.parent for p in list_files(root, f"step-*/{marker}")), key=lambda p: p.name)
