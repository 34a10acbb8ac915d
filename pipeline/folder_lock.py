"""One writer per output folder on a machine: a stage run holds an exclusive lock on its output
folder while it checks, deletes (--overwrite) and writes it (runner.run_stage), and a shared lock on
each stage folder it reads, so that no run rewrites an input under it (`--only ingest --overwrite`
while filter reads ingest).

Two runs into one folder (two shells, or an Airflow retry submitted while the first Ray job still
runs: job drivers run on the head node) each removed the other's temporaries as a killed run's
and wrote the same parts; the second now stops at once with the first's process id. The lock is
a file under the per-machine cache (`$CRAWLMILL_CACHE/locks/`, named by the folder's resolved
path or normalised URL), held with `flock`, so the system releases it when its holder dies: a
killed run never leaves the folder locked. Drivers on different machines writing one store
prefix do not see each other (an object store has no locks).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import time
from typing import Any, Iterator

from crawlmill.files import AnyPath
from crawlmill.local_cache import cache_root

from .output_folder import folder_key


class OutputFolderBusy(OSError):
    """Another run on this machine is writing the output folder: exit status 1 (rerun once it has
    ended), as a failed task, not 2: nothing is wrong with the command."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EBUSY, message)

    def __str__(self) -> str:
        return self.strerror


@contextlib.contextmanager
def folder_locks(folders: list[AnyPath], reading: bool = False) -> Iterator[None]:
    """The locks of several folders (a stage's output and the state it extends: dedup's index),
    taken in one order by every run, so that two runs never wait on each other in turn.
    `reading`: shared locks of the stage folders a run reads, which any number of readers hold at
    once and which keep a run from writing (--overwrite deleting) a folder being read."""
    with contextlib.ExitStack() as stack:
        for folder in sorted({folder_key(f): f for f in folders}.values(), key=folder_key):
            stack.enter_context(output_lock(folder, reading))
        yield


@contextlib.contextmanager
def output_lock(output: AnyPath, reading: bool = False) -> Iterator[None]:
    """Hold the lock of `output` for the block (shared when `reading`); OutputFolderBusy when
    another process holds it exclusively, or any holds it and this one would write."""
    key = folder_key(output)  # a local path resolved (links followed), a URL normalised
    folder = cache_root() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if reading else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "a process"  # a writer's line (readers write none)
            doing = "reads it as its input" if not reading and _only_readers(handle) else f"is writing it ({holder})"
            raise OutputFolderBusy(
                f"{output}: another crawlmill run on this machine {doing}; "
                "wait for it to end (or stop it), then run the same command again: it resumes"
            ) from None
        if not reading:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}; {key}\n")
            handle.flush()
        yield


def _only_readers(handle: Any) -> bool:
    """Whether the lock that refused a writer is held by readers only (a shared lock is still granted)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(handle, fcntl.LOCK_UN)
    return True
