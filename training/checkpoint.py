"""Checkpoints of a training run: everything an exact resume needs, written so that a kill at any
moment leaves the last complete checkpoint usable.

    RUN/checkpoints/step-00000050/model/           model and optimizer: Megatron-Core dist_checkpointing
    RUN/checkpoints/step-00000050/rank-00000.pt    this rank's RNG states
    RUN/checkpoints/step-00000050/meta.json        step, consumed samples, tokens, world size, data order (written last)
    RUN/checkpoints/latest                         the newest complete checkpoint's folder name

Model and optimizer go through dist_checkpointing (sharded_io.py): every rank writes its shards
into `model/`, rank 0 the common part and the metadata. Beside it each rank's file holds the
Python, numpy, torch (and CUDA) generator states and Megatron's RNG tracker states, loaded weights
only (load_state); meta.json the data position. A checkpoint is written into
`.tmp-step-NNNNNNNN/` and renamed when every rank has written (rank 0 renames after a barrier),
then `latest` moves and checkpoints beyond the last `keep` are deleted.

On GPU the save is asynchronous (dist_checkpointing's async save: tensors copied to host memory,
a forked process writes them while training goes on) and the checkpoint is completed (finalized,
then renamed) at the next save or at the end. On CPU the save is synchronous. A run resumes on
another number of ranks, and on CPU with other parallel sizes too (dist_checkpointing reads by
global key; layout.py says what loads where, and whose RNG states).

A run folder at a URL (runstore.py): checkpoints are written as above into the local staging
folder; once a save is complete, uploads run in a background thread of each rank while training
goes on: each rank uploads the files it wrote (its rank file and its `model/__RANK_*.distcp`) to
URL/checkpoints/step-N/, then its marker `_uploaded/rank-R`; rank 0, once every rank's marker is
there, uploads the common model files, meta.json and then the marker `_COMPLETE`, last, then
`latest`, deletes the `_uploaded/` markers and the remote checkpoints beyond the last `keep`. The
thread needs no collective (the markers replace a barrier). The next save, and the end of the
run, wait for the upload before them and raise its error. Only folders with `_COMPLETE` count: a
killed upload leaves a folder without one, which is never resumed from and is deleted at the next
start. The local copies are deleted once uploaded. `--resume` finds the newest complete remote
checkpoint; one rank per staging folder downloads its common files there (sharing.who_shares), and
each rank fetches the byte ranges of the shard files it reads, no others (fetch_on_read.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from crawlmill.files import AnyPath, as_path, atomic_write_json, atomic_write_text, list_files, read_json, read_text, remove_file, remove_tree
from crawlmill.pathsafety import inside_folder

from .fetch_on_read import download_common, fetch_once, fetched_reads
from .layout import ResumeLayout
from .rng_state import load_state
from .runstore import DOWNLOADED, complete_folders, download, held_copy, remove_leftover_copies, upload
from .sharded_io import COMMON_FILES, DamagedCheckpoint, ShardedWriter, check_sizes, load_sharded, rank_files
from .sharing import ElsewhereFailed, collective_device, leader_does, rank0_random, who_shares
from .stopsignal import any_rank

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
MODEL = "model"  # the dist_checkpointing folder of a checkpoint
COMPLETE = "_COMPLETE"  # a remote checkpoint's marker, uploaded after every other file of it
UPLOADED = "_uploaded"  # per-rank markers of a remote checkpoint being uploaded: rank 0 waits for all
UPLOAD_TIMEOUT_S = 6 * 3600.0  # rank 0's wait for the other ranks' uploads of one checkpoint


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def step_folder(path: AnyPath) -> AnyPath:
    """`path`, or where it is no checkpoint and its name says a step in other digits than
    step_name's (`step-2000`, as people write it), that step's folder beside it (`step-00002000`)."""
    match = re.fullmatch(r"step-([0-9]+)", path.name)
    return path.parent / step_name(int(match[1])) if match and not (path / META).is_file() else path


def complete_checkpoints(root: Path, remote: AnyPath | None = None) -> Iterator[tuple[AnyPath, dict[str, Any]]]:
    """The complete checkpoints of a run and their metas, newest first (the `latest` pointer's, then
    the others by step): under `remote` (a URL run's checkpoints folder) when given, else under the
    local `root`. The `latest` pointer is data: a folder name outside the checkpoints folder is an
    error naming it. meta.json names no file (step, world size, data position); the rank files are
    named by the loader."""
    if remote is not None:
        pointer = remote / LATEST
        names = [inside_folder(read_text(pointer).strip(), pointer, "its checkpoint")] if pointer.is_file() else []
        names += [p.name for p in reversed(complete_folders(remote, COMPLETE))]
        for name in dict.fromkeys(names):
            folder = remote / name
            if (folder / COMPLETE).is_file():
                yield folder, read_json(folder / META)
        return
    pointer = root / LATEST
    candidates = [root / inside_folder(pointer.read_text().strip(), pointer, "its checkpoint")] if pointer.is_file() else []
    candidates += sorted((p for p in root.glob("step-*") if p.is_dir()), reverse=True)
    for folder in dict.fromkeys(candidates):
        if (folder / META).is_file():
            yield folder, json.loads((folder / META).read_text())


def latest_checkpoint(root: Path, remote: AnyPath | None = None) -> tuple[AnyPath, dict[str, Any]] | None:
    """The newest complete checkpoint of a run and its meta, if any (complete_checkpoints)."""
    return next(complete_checkpoints(root, remote), None)


def discard_local(folder: Path) -> None:
    """Delete a checkpoint folder so that a kill part way never leaves it looking complete: its
    meta.json first (rmtree goes in listing order, which may leave meta.json to the last)."""
    (folder / META).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


class Checkpointer:
    """Saves and finds checkpoints of one run for one rank (see the module docstring)."""

    def __init__(
        self, run_dir: Path, rank: int, world: int, keep: int, asynchronous: bool, barrier: Callable[[], None],
        remote: AnyPath | None = None, published: Callable[[], None] | None = None,
        trusted: bool = False, fully_parallel: bool = True, constant_structure: bool = False, shield: tuple[str, ...] = (), strategy: Any = None,
    ) -> None:  # fmt: skip
        """`remote`: the run folder's URL (checkpoints are uploaded there); `published`: called on
        rank 0 once a checkpoint is complete (the run uploads its logs then); `trusted`: load the model folder without the data-only checks (sharded_io.load_sharded);
        `fully_parallel`, `constant_structure`, `strategy`: how the model folder is written, `shield`:
        the signals its writers outlive (the stop signal, SIGINT; sharded_io.py)."""
        self.root = Path(run_dir) / CHECKPOINTS
        self.remote = as_path(remote) / CHECKPOINTS if remote is not None else None
        self.rank, self.world, self.keep, self.barrier = rank, world, keep, barrier
        self.trusted = trusted
        self.published = published
        self.writer = ShardedWriter(asynchronous, fully_parallel, constant_structure, shield=shield, strategy=strategy)
        self._pending: tuple[int, dict[str, Any]] | None = None
        self._closed = False
        self._upload: threading.Thread | None = None
        self._upload_error: tuple[int, BaseException] | None = None

    @property
    def location(self) -> str:
        """Where the checkpoints are kept (for the log): the URL's folder, else the local one."""
        return str(self.remote if self.remote is not None else self.root)

    def remove_unfinished(self) -> None:
        """A killed save leaves a `.tmp-step-*` folder (or a replaced step's `.tmp-replaced-step-*`),
        and at a URL a step folder without its marker: they are removed before training resumes
        (locally by rank 0, or by every rank in its staging folder for a URL, which a machine may
        have to itself)."""
        if (self.rank == 0 or self.remote is not None) and self.root.is_dir():
            for folder in self.root.glob(".tmp-*"):  # a save's folder, or a replaced one's (finish)
                shutil.rmtree(folder, ignore_errors=True)
            remove_leftover_copies(self.root)
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
        if self.remote is not None and self.rank == 0:
            # The same step saved again after a resume: no longer complete before any rank uploads into it.
            remove_file(self.remote / step_name(step) / COMPLETE)
        self.barrier()
        if self.remote is not None:
            self.wait_for_upload()
            if self.rank == 0 and self.published is not None:
                self.published()  # the logs up to this save (a resume cuts them back to its checkpoint)
            self._upload = threading.Thread(target=self._upload_in_background, args=(step, meta), name=f"upload-{step_name(step)}", daemon=True)
            self._upload.start()
            return
        if self.rank == 0:
            tmp, final = self.root / f".tmp-{step_name(step)}", self.root / step_name(step)
            atomic_write_json(tmp / META, {**meta, "step": step, "world_size": self.world})
            aside = self.root / f".tmp-replaced-{step_name(step)}"
            if final.exists():  # the same step saved again after a resume: moved aside whole, then deleted
                final.rename(aside)
            tmp.rename(final)
            shutil.rmtree(aside, ignore_errors=True)
            atomic_write_text(self.root / LATEST, step_name(step))
            for old in sorted(p for p in self.root.glob("step-*") if p.is_dir())[: -self.keep]:
                discard_local(old)
        self.barrier()

    def settle(self) -> None:
        """Complete the pending save and, at a URL, its upload, now (collective): for a checkpoint
        that must outlive this machine soon (a preemption notice's), not only the next save."""
        self.finish()
        self.wait_for_upload()

    def close(self, publish: bool = True) -> None:
        """Complete any pending save and its upload, and stop the asynchronous writer (once);
        `publish`: call `published` at a URL (not for a run that logged nothing new)."""
        if self._closed:
            return
        self._closed = True
        self.settle()
        if publish and self.remote is not None and self.rank == 0 and self.published is not None:
            self.published()
        self.writer.close()

    def wait_for_upload(self) -> None:
        """Wait for the background upload of the last remote checkpoint; raise what stopped it."""
        if self._upload is not None:
            self._upload.join()
            self._upload = None
        if self._upload_error is not None:
            step, error = self._upload_error
            self._upload_error = None
            raise RuntimeError(f"uploading {step_name(step)} to {self.remote} failed: {type(error).__name__}: {error}") from error

    def _upload_in_background(self, step: int, meta: dict[str, Any]) -> None:
        try:
            self._publish_remote(step, meta)
        except BaseException as error:  # kept for the training thread, which raises it
            self._upload_error = (step, error)

    def _publish_remote(self, step: int, meta: dict[str, Any], poll_s: float = 0.5, timeout_s: float = UPLOAD_TIMEOUT_S) -> None:
        """This rank's files, then its marker; rank 0, once every rank's marker is there: the common
        model files, meta.json, the marker `_COMPLETE`, `latest`, and old checkpoints deleted. Each
        rank deletes the local files it uploaded; rank 0 the whole local folder, after every rank."""
        tmp, folder = self.root / f".tmp-{step_name(step)}", self.remote / step_name(step)
        mine = [tmp / f"rank-{self.rank:05d}.pt", *(p for p in rank_files(tmp / MODEL, self.rank) if p.name not in COMMON_FILES)]
        for path in mine:
            upload(path, folder / path.relative_to(tmp).as_posix())
        if self.rank != 0:
            atomic_write_text(folder / UPLOADED / f"rank-{self.rank:05d}", "")
            for path in mine:  # the machine's other ranks, rank 0 among them, may still be uploading theirs
                path.unlink(missing_ok=True)
            for empty in (tmp / MODEL, tmp):  # on a machine without rank 0, the last rank leaves nothing
                with contextlib.suppress(OSError):
                    empty.rmdir()
            return
        deadline = time.monotonic() + timeout_s
        while len(list_files(folder / UPLOADED)) < self.world - 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{folder}: {len(list_files(folder / UPLOADED))} of the other {self.world - 1} ranks uploaded their files within {timeout_s:.0f} s")
            time.sleep(poll_s)
        for path in rank_files(tmp / MODEL, 0):
            if path.name in COMMON_FILES:
                upload(path, folder / MODEL / path.name)
        atomic_write_json(tmp / META, {**meta, "step": step, "world_size": self.world})
        upload(tmp / META, folder / META)
        remove_tree(folder / UPLOADED)
        atomic_write_text(folder / COMPLETE, "")
        atomic_write_text(self.remote / LATEST, step_name(step))
        for old in complete_folders(self.remote, COMPLETE)[: -self.keep]:
            remove_file(old / COMPLETE)  # first: a deletion cut short leaves no "complete" folder with files missing
            remove_tree(old)
        shutil.rmtree(tmp, ignore_errors=True)

    def latest(self) -> tuple[AnyPath, dict[str, Any]] | None:
        """The newest complete checkpoint and its meta, if any (latest_checkpoint)."""
        return latest_checkpoint(self.root, self.remote)

    def complete(self) -> Iterator[tuple[AnyPath, dict[str, Any]]]:
        """Every complete checkpoint and its meta, newest first (complete_checkpoints)."""
        return complete_checkpoints(self.root, self.remote)

    def load(self, folder: AnyPath, meta: dict[str, Any], layout: ResumeLayout, sharded: dict[str, Any] | Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the model and optimizer state, filling `sharded`, the template for loading, or what
        makes it once the layout is checked; this rank's RNG states) from `folder`, saved by this
        `layout` or one it can load (layout.py). Collective for a URL's checkpoint: its common files
        are downloaded once per staging folder (sharing.who_shares), then each rank fetches the
        byte ranges it reads (fetch_on_read.py)."""
        name = f"rank-{layout.rng_rank(meta, self.world, self.rank, folder):05d}.pt"
        sharded = sharded() if callable(sharded) else sharded
        if self.remote is None:
            rng = self._agreed(lambda: load_state(Path(folder) / name)["rng"], folder)  # first: the file that could hold more than data
            return self._agreed(lambda: load_sharded(sharded, Path(folder) / MODEL, self.trusted), folder), rng
        sharing = who_shares(self.root)  # one copy per staging folder, whoever shares it (sharing.py)
        # this load's copy (another process may load it too), named by its leader (two in one folder: two copies)
        local = self.root / f"{DOWNLOADED}{Path(str(folder)).name}-{rank0_random():012x}-{sharing.leader}"
        with contextlib.ExitStack() as held:
            def stage() -> None:  # the leader's: the copy held for the load, the common files in it
                held.enter_context(held_copy(local))
                download_common(folder / MODEL, local / MODEL)

            leader_does(stage, sharing, f"downloading {folder}")  # then each rank fetches what it reads (fetch_on_read.py)
            try:
                def read_rng() -> dict[str, Any]:
                    fetch_once(folder / name, local / name)
                    return load_state(local / name, folder / name)["rng"]

                rng = self._agreed(read_rng, folder)
                with fetched_reads(local / MODEL, folder / MODEL):
                    return self._agreed(lambda: load_sharded(sharded, local / MODEL, self.trusted), folder), rng
            finally:
                self.barrier()  # every rank done reading before the copies go

    def check(self, folder: AnyPath, meta: dict[str, Any], layout: ResumeLayout) -> None:
        """What `load` would refuse, or find damaged or cut short, without reading a tensor: the
        layout, this rank's RNG file, each model file as long as `.metadata` says (check_sizes).
        Collective. For a finished run's resume, which loads nothing."""
        name = f"rank-{layout.rng_rank(meta, self.world, self.rank, folder):05d}.pt"

        def read_rng() -> None:
            if self.remote is None:
                load_state(Path(folder) / name)
                return
            with tempfile.TemporaryDirectory(prefix="crawlmill-rng-") as local:  # a fresh machine has no staging folder yet
                download(folder / name, Path(local) / name)
                load_state(Path(local) / name, folder / name)

        self._agreed(read_rng, folder)
        self._agreed(lambda: check_sizes(folder / MODEL, self.trusted), folder)

    @staticmethod
    def _agreed(read: Callable[[], Any], folder: AnyPath) -> Any:
        """`read()` on every rank, collective: a damaged file on any rank is DamagedCheckpoint on every
        rank, so that all of them go on to the same checkpoint, or none does; any other failure on a
        rank (a download cut off, a refused file) ends every rank (its own error, ElsewhereFailed on
        the others) rather than leaving them in the next collective. Needed for the model folder
        too: megatron-core 0.19's sharded load does not gather the ranks' errors (0.16's did)."""
        damaged: DamagedCheckpoint | None = None
        failed: BaseException | None = None
        try:
            result = read()
        except DamagedCheckpoint as exc:
            damaged, result = exc, None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - torch's CheckpointException is a BaseException; re-raised below
            failed, result = exc, None
        any_damaged, any_failed = any_rank([damaged is not None, failed is not None], collective_device())
        if failed is not None:
            raise failed
        if any_failed:
            raise ElsewhereFailed(f"{folder}: loading failed on another rank (its error is in that rank's output)")
        if any_damaged:
            raise damaged or DamagedElsewhere(f"{folder}: another rank's file of this checkpoint is damaged or incomplete")
        return result


class DamagedElsewhere(DamagedCheckpoint):
    """This rank's files of a checkpoint are whole; another rank's are not (Checkpointer._agreed)."""
