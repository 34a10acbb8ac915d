"""A Ray worker's memory between the tasks it runs (runner.run_task and run_node call these).

A worker lives for many tasks: without `release_memory` its resident size keeps the high-water mark
of every task it ran, and without `freeze_worker_state` every collection walks what the first task
left behind (imported modules, library state) again.
"""

from __future__ import annotations

import ctypes
import gc
import sys

_TASKS_RELEASED = 0  # in this process


def release_memory() -> None:
    """Hand freed memory back to the OS between tasks: a Ray worker runs many tasks, and without this
    its resident size would keep the high-water mark of every task it ran (BENCHMARKS.md, dedup)."""
    global _TASKS_RELEASED
    gc.collect()
    _TASKS_RELEASED += 1
    try:
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        pass
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def freeze_worker_state() -> None:
    """Before a worker's second task: what the first one left (the modules it imported, Ray's and
    the libraries' state) lives as long as the worker, so it is frozen out of the collections
    after every later task, which otherwise walked it all (60 ms a task in an ingest worker, more
    than a small WARC file's own work). Not at the end of the first task: its frames, arguments
    and any exception in flight would be frozen with it, and a cycle among them never collected."""
    if _TASKS_RELEASED >= 1 and gc.get_freeze_count() == 0:  # >=: a run_node task may have been the worker's first
        gc.freeze()
