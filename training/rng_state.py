"""A rank's generator states (Python, numpy, torch, CUDA, Megatron's tracker), as a checkpoint's
rank file holds them, and that file loaded without running anything it holds (checkpoint.py).

    torch.save({"rng": rng_state()}, path); set_rng_state(load_state(path)["rng"])
"""

from __future__ import annotations

import pickle
import random
import zipfile
from typing import Any

import numpy as np
import torch

from crawlmill.files import AnyPath

from .compat import rng_tracker_states, set_rng_tracker_states
from .sharded_io import DamagedCheckpoint, damage, refusal_detail


def _numpy_rng_globals() -> list[Any]:
    """What a rank's file holds besides tensors and plain data, the only types torch.load may build
    beyond its weights-only defaults: numpy's MT19937 state, an ndarray of uint32 (rng_state())."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_state(path: AnyPath, name: AnyPath | None = None) -> dict[str, Any]:
    """A rank's file, loaded without running anything it holds: a checkpoint is data that anyone who
    can write the run folder (a bucket, a shared disk) may have replaced, and a pickle may call any
    function. torch.load(weights_only=True) builds tensors, plain containers and numbers only, plus
    the numpy RNG state above; anything else is refused, with `name` (default: path) in the error."""
    try:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, OSError) as exc:
        detail = damage(exc)
        if detail is not None:
            raise DamagedCheckpoint(f"{name or path}: damaged or incomplete ({detail})") from None
        if isinstance(exc, pickle.UnpicklingError):
            raise ValueError(f"{name or path}: refused: a checkpoint holds only tensors and plain data, this file asks for more ({refusal_detail(exc)})") from None
        raise


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(), "megatron": rng_tracker_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    set_rng_tracker_states(state.get("megatron") or {})
