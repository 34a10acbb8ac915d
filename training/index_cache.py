"""Megatron's dataset index cache of a run (`RUN/data_cache`): built once per disk, and built again
when a kill cut one of its files short.

Megatron writes each cache file in place and trusts any that exist, so a `.npy` cut by a kill made
every later resume fail (`mmap length is greater than file size`) until someone deleted the folder;
`drop_damaged_cache` checks each file's header against its size before a build.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from unittest import mock

import numpy as np
import torch.distributed as dist

from .sharing import leaders_first, who_shares

T = TypeVar("T")


def drop_damaged_cache(cache_dir: Path) -> None:
    """Delete the cache when a file of it is unreadable (cut short, garbled): it is built again."""
    for path in sorted(Path(cache_dir).glob("*.npy")):
        try:
            np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            print(f"{cache_dir}: {path.name} is damaged ({exc}); building the dataset index cache again", file=sys.stderr)
            shutil.rmtree(cache_dir, ignore_errors=True)
            return


@contextlib.contextmanager
def one_process_view() -> Iterator[None]:
    """Megatron's dataset code sees no process group: it builds a missing index cache itself and
    waits on no barrier (each rank's build is its own)."""
    with mock.patch.object(dist, "is_initialized", lambda: False), mock.patch.object(dist, "get_rank", lambda group=None: 0):
        yield


def machine_by_machine(build: Callable[[], T], cache_dir: Path) -> T:
    """`build()` (Megatron's dataset builder) with its index cache built once per disk. Megatron
    builds the cache on global rank 0 and every other rank reads it: a machine that does not share
    rank 0's disk (a run folder at a URL stages it per machine) found none. Here rank 0 builds, then
    one rank per other folder `cache_dir` (sharing.leaders_first: a hit where it is rank 0's, a
    build on a disk of its own), then every other rank reads its folder's cache."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        drop_damaged_cache(cache_dir)
        return build()
    sharing = who_shares(cache_dir)

    def alone() -> T:
        if sharing.leads:  # a leader's turn comes before the readers of its folder: only it may delete
            drop_damaged_cache(cache_dir)
        with one_process_view():
            return build()

    return leaders_first(alone, sharing, f"building the dataset index cache in {cache_dir}")
