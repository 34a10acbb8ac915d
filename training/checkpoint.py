"""Checkpoints of a training run: everything an exact resume needs, written so that a kill at any
moment leaves the last complete checkpoint usable.

    RUN/checkpoints/step-00000050/rank-00000.pt   this rank's model, optimizer, RNG states
    RUN/checkpoints/step-00000050/meta.json       step, consumed samples, tokens, world layout (written last)
    RUN/checkpoints/latest                        the newest complete checkpoint's folder name

A checkpoint is written into `.tmp-step-NNNNNNNN/` and renamed when every rank's file is there
(rank 0 renames after a barrier), then `latest` moves and checkpoints beyond the last `keep` are
deleted. Each rank's state holds its model and optimizer state dicts, the Python, numpy, torch
(and CUDA) generator states and Megatron's RNG tracker states; meta.json the data position.

On GPU the save is asynchronous: the state is copied to host memory, a thread writes it while
training goes on, and the checkpoint is completed (the collective rename) at the next save or at
the end. On CPU the save is synchronous. A data-parallel-only run (tensor, pipeline, context 1)
holds the same model on every rank, so it resumes on any number of ranks from rank 0's file.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from crawlmill.files import atomic_write_json, atomic_write_text

from .compat import rng_tracker_states, set_rng_tracker_states

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"


def step_name(step: int) -> str:
    return f"step-{step:08d}"


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


def _to_host(obj: Any) -> Any:
    """A copy with every tensor on the CPU (the async save writes this while training changes the original)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_host(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_host(v) for v in obj)
    return obj


class Checkpointer:
    """Saves and finds checkpoints of one run for one rank (see the module docstring)."""

    def __init__(self, run_dir: Path, rank: int, world: int, keep: int, asynchronous: bool, barrier: Callable[[], None]) -> None:
        self.root = Path(run_dir) / CHECKPOINTS
        self.rank, self.world, self.keep, self.asynchronous, self.barrier = rank, world, keep, asynchronous, barrier
        self._pending: tuple[threading.Thread, int, dict[str, Any]] | None = None

    def remove_unfinished(self) -> None:
        """A killed save leaves a `.tmp-step-*` folder: rank 0 removes it before training resumes."""
        if self.rank == 0 and self.root.is_dir():
            for folder in self.root.glob(".tmp-step-*"):
                shutil.rmtree(folder, ignore_errors=True)
        self.barrier()

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> float:
        """Write this rank's state for `step`; returns the seconds training waited."""
        started = time.perf_counter()
        self.finish()
        tmp = self.root / f".tmp-{step_name(step)}"
        tmp.mkdir(parents=True, exist_ok=True)
        target = tmp / f"rank-{self.rank:05d}.pt"
        if self.asynchronous:
            host = _to_host(state)
            thread = threading.Thread(target=torch.save, args=(host, target), daemon=True)
            thread.start()
            self._pending = (thread, step, meta)
        else:
            torch.save(state, target)
            self._pending = (None, step, meta)  # type: ignore[assignment]
            self.finish()
        return time.perf_counter() - started

    def finish(self) -> None:
        """Complete the pending save: every rank's file written, then rank 0 publishes it (collective)."""
        if self._pending is None:
            return
        thread, step, meta = self._pending
        self._pending = None
        if thread is not None:
            thread.join()
        self.barrier()
        if self.rank == 0:
            tmp, final = self.root / f".tmp-{step_name(step)}", self.root / step_name(step)
            atomic_write_json(tmp / META, {**meta, "step": step, "world_size": self.world})
            if final.exists():  # the same step saved again after a resume
                shutil.rmtree(final)
            tmp.rename(final)
            atomic_write_text(self.root / LATEST, step_name(step))
            for old in sorted(p for p in self.root.glob("step-*") if p.is_dir())[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.barrier()

    def latest(self) -> tuple[Path, dict[str, Any]] | None:
        """The newest complete checkpoint and its meta, if any."""
        pointer = self.root / LATEST
        candidates = [self.root / pointer.read_text().strip()] if pointer.is_file() else []
        candidates += sorted((p for p in self.root.glob("step-*") if p.is_dir()), reverse=True)
        for folder in candidates:
            if (folder / META).is_file():
                return folder, json.loads((folder / META).read_text())
        return None

    def load(self, folder: Path, meta: dict[str, Any], replicated: bool) -> dict[str, Any]:
        """This rank's state from `folder`; a replicated (data-parallel-only) model may change world size."""
        rank = self.rank
        if meta["world_size"] != self.world:
            if not replicated:
                raise ValueError(f"{folder} was saved by {meta['world_size']} ranks with model parallelism; resume with the same layout")
            rank = 0
        return torch.load(folder / f"rank-{rank:05d}.pt", map_location="cpu", weights_only=False)
