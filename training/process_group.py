"""The process group a rank trains in, and its seeds: the group torchrun or Ray Train made, or a
one-rank gloo group made here (and removed with its file store afterwards); every generator seeded
(Python, NumPy, torch, Megatron's model-parallel RNG tracker). trainer.py and run_model.py use it.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .compat import seed_model_parallel, use_cuda
from .sharing import local_index

_STORE_DIR: str | None = None  # the file store of a group made here, removed with the group


def init_distributed() -> tuple[int, int, bool]:
    """(rank, world size, whether this call made the group). torchrun and Ray Train make it for us."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    backend = "nccl" if use_cuda() else "gloo"
    if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ:
        dist.init_process_group(backend)
    else:
        global _STORE_DIR
        _STORE_DIR = tempfile.mkdtemp(prefix="crawlmill-pg-")
        store = Path(_STORE_DIR) / "store"
        dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)
    if use_cuda():
        torch.cuda.set_device(local_index() % torch.cuda.device_count())
    return dist.get_rank(), dist.get_world_size(), True


def release_distributed(made_group: bool) -> None:
    """Undo init_distributed: the group it made, and its file store, are removed."""
    global _STORE_DIR
    if made_group:
        dist.destroy_process_group()
        if _STORE_DIR is not None:
            shutil.rmtree(_STORE_DIR, ignore_errors=True)
            _STORE_DIR = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    seed_model_parallel(seed)
