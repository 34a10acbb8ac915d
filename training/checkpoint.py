"""Checkpoints of a training run: everything an exact resume needs, written so that a kill at any
moment leaves the last complete checkpoint usable.

    RUN/checkpoints/step-00000050/model/           model and optimizer: Megatron-Core dist_checkpointing
    RUN/checkpoints/step-00000050/rank-00000.pt    this rank's RNG states
    RUN/checkpoints/step-00000050/meta.json        step, consumed samples, tokens, world size (written last)
    RUN/checkpoints/latest                         the newest complete checkpoint's folder name

Model and optimizer go through dist_checkpointing (sharded_io.py): every rank writes its shards
into `model/`, rank 0 the common part and the metadata. Beside it each rank's file holds the
Python, numpy, torch (and CUDA) generator states and Megatron's RNG tracker states, loaded weights
only (load_state); meta.json the data position. A checkpoint is written into
`.tmp-step-NNNNNNNN/` and renamed when every rank has written (rank 0 renames after a barrier),
then `latest` moves and checkpoints beyond the last `keep` are deleted.

On GPU the save is asynchronous (dist_checkpointing's async save: tensors copied to host memory,
a forked process writes them while training goes on) and the checkpoint is completed (finalized,
then renamed) at the next save or at the end. On CPU the save is synchronous. A data-parallel-only
run (tensor, pipeline, context 1) resumes on any number of ranks (dist_checkpointing reads by
global key; the RNG states are then rank 0's).

A run folder at a URL (runstore.py): checkpoints are written as above into the local staging
folder; once a save is complete each rank uploads the files it wrote (its rank file and its
`model/__RANK_*.distcp`) to URL/checkpoints/step-N/; after a barrier rank 0 uploads the common
model files, meta.json and then the marker `_COMPLETE`, last, then `latest`, and deletes the
remote checkpoints beyond the last `keep`. Only folders with the marker count: a killed upload
leaves a folder without one, which is never resumed from and is deleted at the next start. The
local copies are deleted once uploaded. `--resume` finds the newest complete remote checkpoint;
the first rank of each machine downloads it into the staging folder for the machine's ranks.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from crawlmill.files import AnyPath, as_path, atomic_write_json, atomic_write_text, list_files, read_json, read_text, remove_tree
from crawlmill.pathsafety import inside_folder

from .compat import rng_tracker_states, set_rng_tracker_states
from .runstore import complete_folders, download_tree, upload
from .sharded_io import COMMON_FILES, ShardedWriter, load_sharded, rank_files, refusal_detail

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
MODEL = "model"  # the dist_checkpointing folder of a checkpoint
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
        raise ValueError(f"{name or path}: refused: a checkpoint holds only tensors and plain data, this file asks for more ({refusal_detail(exc)})") from None


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


class Checkpointer:
    """Saves and finds checkpoints of one run for one rank (see the module docstring)."""

    def __init__(
        self, run_dir: Path, rank: int, world: int, keep: int, asynchronous: bool, barrier: Callable[[], None],
        remote: AnyPath | None = None, published: Callable[[], None] | None = None, local_rank: int | None = None,
        trusted: bool = False,
    ) -> None:  # fmt: skip
        """`remote`: the run folder's URL (checkpoints are uploaded there); `published`: called on
        rank 0 once a checkpoint is complete (the run uploads its logs then); `local_rank`: this
        rank's index on its machine (0 downloads a URL checkpoint for the machine; default: rank);
        `trusted`: load the model folder without the data-only checks (sharded_io.load_sharded)."""
        self.root = Path(run_dir) / CHECKPOINTS
        self.remote = as_path(remote) / CHECKPOINTS if remote is not None else None
        self.rank, self.world, self.keep, self.barrier = rank, world, keep, barrier
        self.local_rank = rank if local_rank is None else local_rank
        self.trusted = trusted
        self.published = published
        self.writer = ShardedWriter(asynchronous)
        self._pending: tuple[int, dict[str, Any]] | None = None

    @property
    def location(self) -> str:
        """Where the checkpoints are kept (for the log): the URL's folder, else the local one."""
        return str(self.remote if self.remote is not None else self.root)

    def remove_unfinished(self) -> None:
        """A killed save leaves a `.tmp-step-*` folder (and, at a URL, a step folder without its
        marker): they are removed before training resumes (locally by rank 0, or by every rank in
        its own staging folder for a URL, as machines do not share it)."""
        if (self.rank == 0 or self.remote is not None) and self.root.is_dir():
            for folder in [*self.root.glob(".tmp-step-*"), *self.root.glob(".resume-step-*")]:
                shutil.rmtree(folder, ignore_errors=True)
        if self.rank == 0 and self.remote is not None:
            complete = {p.name for p in complete_folders(self.remote, COMPLETE)}
            for name in {p.parent.name for p in list_files(self.remote, "step-*/*")} - complete:
                remove_tree(self.remote / name)
        self.barrier()

    def save(self, step: int, sharded: dict[str, Any], rng: dict[str, Any], meta: dict[str, Any]) -> float:
        """Write this rank's part of checkpoint `step`: `sharded` (the backend's sharded state dict)
        and `rng` (rng_state()); returns the seconds training waited. Collective."""
        started = time.perf_counter()
        self.finish()
        tmp = self.root / f".tmp-{step_name(step)}"
        tmp.mkdir(parents=True, exist_ok=True)
        torch.save({"rng": rng}, tmp / f"rank-{self.rank:05d}.pt")
        self.writer.save(sharded, tmp / MODEL)
        self._pending = (step, meta)
        if not self.writer.asynchronous:
            self.finish()
        return time.perf_counter() - started

    def finish(self) -> None:
        """Complete the pending save: every rank's files written and the model's metadata
        finalized, then rank 0 publishes it (collective). A failed write raises here, unpublished."""
        if self._pending is None:
            return
        step, meta = self._pending
        self._pending = None
        self.writer.wait()
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

    def close(self) -> None:
        """Complete any pending save and stop the asynchronous writer."""
        self.finish()
        self.writer.close()

    def _publish_remote(self, step: int, meta: dict[str, Any]) -> None:
        """Each rank uploads the files it wrote; after a barrier rank 0 uploads the common model
        files, meta.json, then the marker, then `latest`, and deletes old checkpoints; every rank
        drops its local copy."""
        tmp, folder = self.root / f".tmp-{step_name(step)}", self.remote / step_name(step)
        for path in [tmp / f"rank-{self.rank:05d}.pt", *(p for p in rank_files(tmp / MODEL, self.rank) if p.name not in COMMON_FILES)]:
            upload(path, folder / path.relative_to(tmp).as_posix())
        self.barrier()
        if self.rank == 0:
            for path in rank_files(tmp / MODEL, 0):
                if path.name in COMMON_FILES:
                    upload(path, folder / MODEL / path.name)
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

    def load(self, folder: AnyPath, meta: dict[str, Any], replicated: bool, sharded: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the model and optimizer state, filling `sharded`, the template for loading; this rank's
        RNG states) from `folder`. A replicated (data-parallel-only) model may change world size.
        Collective for a URL's checkpoint (the first rank of each machine downloads it)."""
        rank = self.rank
        if meta["world_size"] != self.world:
            if not replicated:
                raise ValueError(f"{folder} was saved by {meta['world_size']} ranks with model parallelism; resume with the same layout")
            rank = 0
        name = f"rank-{rank:05d}.pt"
        if self.remote is None:
            rng = load_state(Path(folder) / name)["rng"]  # first: the file that could hold more than data
            return load_sharded(sharded, Path(folder) / MODEL, self.trusted), rng
        local = self.root / f".resume-{Path(str(folder)).name}"
        if self.local_rank == 0:
            download_tree(folder, local, skip=(COMPLETE,))
        self.barrier()
        try:
            rng = load_state(local / name, folder / name)["rng"]
            return load_sharded(sharded, local / MODEL, self.trusted), rng
        finally:
            self.barrier()
            if self.local_rank == 0:
                shutil.rmtree(local, ignore_errors=True)
