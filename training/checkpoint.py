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

A run folder at a URL (runstore.py): checkpoints are written as above into the local staging
folder, then each rank uploads its own file to URL/checkpoints/step-N/ (in the writer thread,
after the file is whole: an asynchronous save never uploads a half-written file); after a barrier
rank 0 uploads meta.json and then the marker `_COMPLETE`, last, then `latest`, and deletes the
remote checkpoints beyond the last `keep`. Only folders with the marker count: a killed upload
leaves a folder without one, which is never resumed from and is deleted at the next start. The
local copies are deleted once uploaded (local disk holds one checkpoint of this machine's ranks at
most). `--resume` finds the newest complete remote checkpoint and each rank downloads the one
file it loads.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from crawlmill.files import AnyPath, as_path, atomic_write_json, atomic_write_text, list_files, read_json, read_text, remove_tree
from crawlmill.pathsafety import inside_folder

from .compat import rng_tracker_states, set_rng_tracker_states
from .runstore import complete_folders, download, upload

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
COMPLETE = "_COMPLETE"  # a remote checkpoint's marker, uploaded after every other file of it


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
    except pickle.UnpicklingError as exc:
        # torch's message: what it refused, after advice to load the file unchecked (not ours to give)
        detail = str(exc).partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0] or str(exc)
        detail = " ".join(detail.split()).partition(" Please use")[0].partition(" Please file")[0]
        raise ValueError(f"{name or path}: refused: a checkpoint holds only tensors and plain data, this file asks for more ({detail})") from None


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

    def __init__(
        self, run_dir: Path, rank: int, world: int, keep: int, asynchronous: bool, barrier: Callable[[], None],
        remote: AnyPath | None = None, published: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        """`remote`: the run folder's URL (checkpoints are uploaded there); `published`: called on
        rank 0 once a checkpoint is complete (the run uploads its logs then)."""
        self.root = Path(run_dir) / CHECKPOINTS
        self.remote = as_path(remote) / CHECKPOINTS if remote is not None else None
        self.rank, self.world, self.keep, self.asynchronous, self.barrier = rank, world, keep, asynchronous, barrier
        self.published = published
        self._pending: tuple[threading.Thread | None, int, dict[str, Any]] | None = None
        self._error: BaseException | None = None

    @property
    def location(self) -> str:
        """Where the checkpoints are kept (for the log): the URL's folder, else the local one."""
        return str(self.remote if self.remote is not None else self.root)

    def remove_unfinished(self) -> None:
        """A killed save leaves a `.tmp-step-*` folder (and, at a URL, a step folder without its
        marker): they are removed before training resumes (locally by rank 0, or by every rank in
        its own staging folder for a URL, as machines do not share it)."""
        if (self.rank == 0 or self.remote is not None) and self.root.is_dir():
            for folder in self.root.glob(".tmp-step-*"):
                shutil.rmtree(folder, ignore_errors=True)
        if self.rank == 0 and self.remote is not None:
            complete = {p.name for p in complete_folders(self.remote, COMPLETE)}
            for name in {p.parent.name for p in list_files(self.remote, "step-*/*")} - complete:
                remove_tree(self.remote / name)
        self.barrier()

    def _write(self, state: dict[str, Any], target: Path, step: int) -> None:
        """Write this rank's file, then (URL runs) upload it; an error is kept for finish() to raise."""
        try:
            torch.save(state, target)
            if self.remote is not None:
                upload(target, self.remote / step_name(step) / target.name)
        except BaseException as exc:  # noqa: BLE001 - re-raised by finish() in the training thread
            self._error = exc

    def save(self, step: int, state: dict[str, Any], meta: dict[str, Any]) -> float:
        """Write this rank's state for `step`; returns the seconds training waited."""
        started = time.perf_counter()
        self.finish()
        tmp = self.root / f".tmp-{step_name(step)}"
        tmp.mkdir(parents=True, exist_ok=True)
        target = tmp / f"rank-{self.rank:05d}.pt"
        if self.asynchronous:
            host = _to_host(state)
            thread = threading.Thread(target=self._write, args=(host, target, step), daemon=True)
            thread.start()
            self._pending = (thread, step, meta)
        else:
            self._write(state, target, step)
            self._pending = (None, step, meta)
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
        if self._error is not None:  # this rank's file is not whole: the checkpoint is not published
            error, self._error = self._error, None
            raise error
        self.barrier()
        if self.remote is not None:
            self._publish_remote(step, meta)
            return
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

    def _publish_remote(self, step: int, meta: dict[str, Any]) -> None:
        """After every rank uploaded its file (the barrier before): rank 0 uploads meta.json, then the
        marker, then `latest`, and deletes old checkpoints; every rank drops its local copy."""
        tmp, folder = self.root / f".tmp-{step_name(step)}", self.remote / step_name(step)
        if self.rank == 0:
            atomic_write_json(tmp / META, {**meta, "step": step, "world_size": self.world})
            upload(tmp / META, folder / META)
            atomic_write_text(folder / COMPLETE, "")
            atomic_write_text(self.remote / LATEST, step_name(step))
            for old in complete_folders(self.remote, COMPLETE)[: -self.keep]:
                remove_tree(old)
            if self.published is not None:
                self.published()
        self.barrier()
        shutil.rmtree(tmp, ignore_errors=True)  # uploaded; ranks sharing this machine's folder may race: harmless

    def latest(self) -> tuple[AnyPath, dict[str, Any]] | None:
        """The newest complete checkpoint and its meta, if any. The `latest` pointer is data: a
        folder name outside the checkpoints folder is an error naming it. meta.json names no file
        (step, world size, data position); the rank files are named here."""
        if self.remote is not None:
            pointer = self.remote / LATEST
            names = [inside_folder(read_text(pointer).strip(), pointer, "its checkpoint")] if pointer.is_file() else []
            names += [p.name for p in reversed(complete_folders(self.remote, COMPLETE))]
            for name in names:
                folder = self.remote / name
                if (folder / COMPLETE).is_file():
                    return folder, read_json(folder / META)
            return None
        pointer = self.root / LATEST
        candidates = [self.root / inside_folder(pointer.read_text().strip(), pointer, "its checkpoint")] if pointer.is_file() else []
        candidates += sorted((p for p in self.root.glob("step-*") if p.is_dir()), reverse=True)
        for folder in candidates:
            if (folder / META).is_file():
                return folder, json.loads((folder / META).read_text())
        return None

    def load(self, folder: AnyPath, meta: dict[str, Any], replicated: bool) -> dict[str, Any]:
        """This rank's state from `folder`; a replicated (data-parallel-only) model may change world size."""
        rank = self.rank
        if meta["world_size"] != self.world:
            if not replicated:
                raise ValueError(f"{folder} was saved by {meta['world_size']} ranks with model parallelism; resume with the same layout")
            rank = 0
        name = f"rank-{rank:05d}.pt"
        if self.remote is None:
            return load_state(folder / name)
        local = self.root / f".tmp-resume-{self.rank:05d}" / name  # this rank's download only
        download(folder / name, local)
        try:
            return load_state(local, folder / name)
        finally:
            shutil.rmtree(local.parent, ignore_errors=True)

