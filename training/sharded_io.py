"""Model and optimizer state through Megatron-Core's dist_checkpointing (the `torch_dist` format).

Each rank writes its shards of the sharded state dict (`__RANK_N.distcp`), rank 0 the common part
(`common.pt`: the optimizer's hyperparameters and step counts) and, once every rank has written,
the global metadata (`.metadata`, `metadata.json`). Loading reads by global tensor key, so a
data-parallel-only run resumes on any number of ranks.

Asynchronous saves (the GPU path): `dist_checkpointing.save(..., async_sharded_save=True)` copies
the tensors to host memory and returns a request; Megatron's AsyncCallsQueue writes it in a forked
process while training goes on, and `wait()` (collective) finalizes it. Synchronous saves (CPU)
are written before `save` returns. On CPU the library's CUDA calls go through compat.checkpoint_scope.

Fully parallel saves (default, as Megatron-LM's `--ckpt-fully-parallel-save`): a tensor held whole by
every data-parallel rank (the weights; the optimizer's moments without the distributed optimizer)
is written by one of them, the writes spread evenly over the ranks, instead of data-parallel rank 0
writing all of them while the others wait. With `constant_structure` (Megatron-LM's
`--ckpt-assume-constant-structure`) the first save's distribution and plan are reused and the
all-gather that checks every shard is written exactly once runs on the first save only.

Loading is data-only, like a rank file (checkpoint.load_state): torch.distributed.checkpoint reads
`.metadata` with plain pickle and its non-tensor entries with torch.load(weights_only=False), so
either could run code planted in a run folder. `.metadata` is unpickled first with only
torch.distributed.checkpoint's own classes, torch.Size, dtypes and layouts allowed, and the load
runs with TORCH_FORCE_WEIGHTS_ONLY_LOAD set; `trust=True` skips both (checkpoints only you wrote).

    writer = ShardedWriter(asynchronous=True)
    writer.save(backend.sharded_state_dict(), folder)   # returns once the host copy is made
    writer.wait()                                       # every rank's files and the metadata written
    state = load_sharded(backend.sharded_state_dict(is_loading=True), folder)
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import pickle
import signal
import threading
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from crawlmill.files import AnyPath, list_file_sizes

from .compat import async_save_options, checkpoint_scope

COMMON_FILES = (".metadata", "common.pt", "metadata.json")  # rank 0's, written last of all


def rank_files(folder: Path, rank: int) -> list[Path]:
    """The files `rank` wrote into a finished save's folder; rank 0's include the common ones."""
    files = sorted(folder.glob(f"__{rank}_*.distcp"))
    if rank == 0:
        files += [folder / name for name in COMMON_FILES if (folder / name).is_file()]
    return files


def torch_optimizer_sharded_state(optimizer: torch.optim.Optimizer, model_sharded: dict[str, Any]) -> dict[str, Any]:
    """A torch optimizer's state dict as a sharded one: each moment a ShardedTensor keyed by its
    parameter's global key (dist_checkpointing's own helpers); the step counts, one number per
    parameter that the helpers would try to shape like it, stay in the common part."""
    from megatron.core.dist_checkpointing.optimizer import get_param_id_to_sharded_param_map, optim_state_to_sharding_state

    state = optimizer.state_dict()
    steps = {pid: s["step"] for pid, s in state["state"].items() if "step" in s}
    params = (p for group in optimizer.param_groups for p in group["params"])
    optim_state_to_sharding_state(state, get_param_id_to_sharded_param_map(model_sharded, params), exclude_keys=("step",))
    state["steps"] = steps
    return state


def torch_optimizer_state(loaded: dict[str, Any]) -> dict[str, Any]:
    """What `torch_optimizer_sharded_state` saved, as torch's load_state_dict takes it."""
    state = {pid: dict(moments) for pid, moments in loaded["state"].items()}
    for pid, step in loaded.get("steps", {}).items():
        state.setdefault(pid, {})["step"] = step
    return {"state": state, "param_groups": loaded["param_groups"]}


def save_strategy(fully_parallel: bool, constant_structure: bool, group: Any = None) -> Any:
    """The torch_dist save strategy, wrapped to spread replicated tensors over `group` (default: the
    data-parallel ranks with context parallel, as Megatron-LM's) when `fully_parallel`."""
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper
    from megatron.core.dist_checkpointing.strategies.torch import TorchDistSaveShardedStrategy

    strategy = TorchDistSaveShardedStrategy("torch_dist", 1, cached_metadata=constant_structure)
    if not fully_parallel:
        return strategy
    if group is None:
        from megatron.core import parallel_state

        group = parallel_state.get_data_parallel_group(with_context_parallel=True) if parallel_state.model_parallel_is_initialized() else None
    return FullyParallelSaveStrategyWrapper(strategy, group, do_cache_distribution=constant_structure)


@contextlib.contextmanager
def shielded(signums: tuple[int, ...]) -> Iterator[None]:
    """`signums` ignored meanwhile, so that the helper processes dist_checkpointing starts at its
    first save (an asynchronous save's result queue's manager, a synchronous one's being this
    process's own: results_in_process; multiprocessing's resource tracker, a persistent
    asynchronous caller: started afresh, they would not keep this process's handler, only an
    ignored disposition) ignore it too and outlive a stop signal sent to the whole process group,
    as Slurm sends it: the stop's own checkpoint needs them. Processes forked later keep the
    handler. A stop signal that arrives during this first save is lost (the run then ends as it
    would without the handler: at the kill, resuming from its last checkpoint)."""
    if not signums or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def results_in_process() -> Iterator[None]:
    """A synchronous save's write results passed back through a queue of this process. Megatron's
    writer (filesystem_async) always hands them over through a queue that a spawned Manager process
    serves, started at a process's first save: a fresh interpreter that imports the parent's main
    module again (measured: a 2-rank torchrun run of 6 steps and 3 saves took 21 CPU-s with it, 15
    without: ~3 s a rank, in every rank and Ray Train worker of a CPU run). A synchronous
    save writes, collects and reads them back in this process; an asynchronous one (another process
    puts them) keeps the library's queue. A megatron-core without that queue is left as it is."""
    import queue

    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if not hasattr(filesystem_async, "_get_write_results_queue") or not hasattr(filesystem_async, "_results_queue"):
        yield
        return
    library_queue, filesystem_async._results_queue = filesystem_async._results_queue, queue.Queue()
    try:
        yield
    finally:
        filesystem_async._results_queue = library_queue


class ShardedWriter:
    """Saves sharded state dicts one at a time, synchronously or through an AsyncCallsQueue
    (module docstring: `fully_parallel`, `constant_structure`; `group`: the ranks that share the
    writing, default the data-parallel ones)."""

    def __init__(
        self, asynchronous: bool, fully_parallel: bool = True, constant_structure: bool = False, group: Any = None, shield: tuple[str, ...] = (),
        strategy: Any = None,
    ) -> None:  # fmt: skip
        """`shield`: signal names (a run's stop signal and SIGINT) that the writer's helper processes ignore (`shielded`);
        `strategy`: a save strategy of its own (lazy_save.ProducingSave) instead of `save_strategy`'s."""
        self.asynchronous = asynchronous
        self.shield = tuple(signal.Signals[name] for name in shield)
        self.fully_parallel, self.constant_structure, self.group = fully_parallel, constant_structure, group
        self._strategy: Any = strategy  # else built at the first save: it needs the process groups
        self._saves = 0
        self._queue: Any = None
        self._pending = False

    def save(self, sharded: dict[str, Any], folder: Path) -> None:
        """Write `sharded` into `folder` (created); asynchronous: returns once tensors are on the host."""
        from megatron.core import dist_checkpointing

        folder.mkdir(parents=True, exist_ok=True)
        if self._strategy is None:
            self._strategy = save_strategy(self.fully_parallel, self.constant_structure, self.group)
        validate = not (self.constant_structure and self._saves)
        shield = self.shield if self._saves == 0 else ()  # the helpers start at the first save
        self._saves += 1
        with checkpoint_scope(), shielded(shield), (contextlib.nullcontext() if self.asynchronous else results_in_process()):
            request = dist_checkpointing.save(
                sharded, str(folder), sharded_strategy=self._strategy, validate_access_integrity=validate,
                async_sharded_save=self.asynchronous, **async_save_options(),
            )  # fmt: skip
            if request is not None:
                if self._queue is None:
                    from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

                    self._queue = AsyncCallsQueue()
                self._queue.schedule_async_request(request)
                self._pending = True

    def wait(self) -> None:
        """Collective: the pending asynchronous save written on every rank and its metadata
        finalized; a failed write raises here."""
        if not self._pending:
            return
        self._pending = False
        with checkpoint_scope():
            self._queue.maybe_finalize_async_calls(blocking=True)

    def close(self) -> None:
        if self._queue is not None:
            self.wait()
            self._queue.close()
            self._queue = None


_METADATA_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.planner", "torch.distributed.checkpoint.filesystem")


NOT_METADATA = "is not checkpoint metadata"  # the refusal, told apart from a file cut short


class _MetadataUnpickler(pickle.Unpickler):
    """Builds torch.distributed.checkpoint's metadata classes and plain data, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if module in (*_METADATA_MODULES, "torch", "torch.serialization", "torch._utils"):  # nothing else is even imported
            found = getattr(__import__(module, fromlist=[name]), name, None)
            if (
                (module in _METADATA_MODULES and isinstance(found, type))
                or (module == "torch" and (found is torch.Size or isinstance(found, torch.dtype)))
                or (module in ("torch.serialization", "torch._utils") and name == "_get_layout")
            ):
                return found
        if (module, name) in (("collections", "OrderedDict"), *(("builtins", n) for n in ("set", "frozenset", "slice"))):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} {NOT_METADATA}")


def check_metadata(folder: Path, trust: bool = False) -> Any:
    """The checkpoint's `.metadata`, refused (ValueError naming it) if it would build anything but
    checkpoint metadata (unless `trust`); DamagedCheckpoint if it is cut short or garbled."""
    path = folder / ".metadata"
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # a folder whose deletion was cut short, or a copy that missed it
        raise DamagedCheckpoint(f"{path}: damaged or incomplete (missing)") from None
    try:
        return pickle.loads(data) if trust else _MetadataUnpickler(io.BytesIO(data)).load()
    except (AttributeError, ImportError) as exc:
        raise ValueError(f"{path}: refused: a checkpoint's metadata holds only checkpoint metadata, this file asks for more ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - garbled bytes raise anything: KeyError, struct.error, EOFError...
        if NOT_METADATA in str(exc):
            raise ValueError(f"{path}: refused: a checkpoint's metadata holds only checkpoint metadata, this file asks for more ({exc})") from None
        raise DamagedCheckpoint(f"{path}: damaged or incomplete ({type(exc).__name__}: {exc})") from None


def check_sizes(folder: AnyPath, trust: bool = False) -> None:
    """DamagedCheckpoint unless each file that the checkpoint's `.metadata` places data in is there
    and reaches the end of it. What a resume that loads nothing (its run is finished) checks: a file
    cut short or missing, without reading a tensor (one listing, and `.metadata`, for a URL too)."""
    ends: dict[str, int] = {}
    for info in (check_metadata(folder, trust).storage_data or {}).values():
        ends[info.relative_path] = max(ends.get(info.relative_path, 0), info.offset + info.length)
    sizes = {path.name: size for path, size in list_file_sizes(folder)}
    for name, end in sorted(ends.items()):
        if sizes.get(name, -1) < end:
            held = f"{sizes[name]:,} bytes" if name in sizes else "missing"
            raise DamagedCheckpoint(f"{folder}: a file of this checkpoint is damaged or incomplete ({name}: {held}, its data ends at byte {end:,})")


def keep_unsaved_extra_state(sharded: Any, saved_keys: set[str]) -> None:
    """Module extra state the checkpoint lacks is kept as the model has it, not demanded: a model with
    Transformer Engine's final norm (extra state) reading a checkpoint of the local spec (torch's norm,
    none; every CPU run and every import), whose weights are the same. Missing weights still fail."""
    from megatron.core.dist_checkpointing.mapping import LocalNonpersistentObject, ShardedObject

    items = sharded.items() if isinstance(sharded, dict) else enumerate(sharded) if isinstance(sharded, list) else ()
    for key, value in list(items):
        if isinstance(value, ShardedObject) and value.key.endswith("_extra_state") and value.unique_key not in saved_keys:
            sharded[key] = LocalNonpersistentObject(value.data)
        elif isinstance(value, (dict, list)):
            keep_unsaved_extra_state(value, saved_keys)


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every torch.load in this scope loads tensors and plain data only, whatever its caller asks."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


def load_sharded(sharded: dict[str, Any], folder: Path, trust: bool = False) -> dict[str, Any]:
    """`sharded` (built for loading) filled from `folder`, data only unless `trust` (module docstring)."""
    from megatron.core import dist_checkpointing

    if trust:
        from torch.distributed.checkpoint import FileSystemReader

        with checkpoint_scope(), load_errors(folder):
            keep_unsaved_extra_state(sharded, set(FileSystemReader(str(folder)).read_metadata().state_dict_metadata))
            return dist_checkpointing.load(sharded, str(folder))
    keep_unsaved_extra_state(sharded, set(check_metadata(folder).state_dict_metadata))
    with checkpoint_scope(), load_errors(folder), weights_only_loads():
        return dist_checkpointing.load(sharded, str(folder))


def damage(exc: BaseException) -> str | None:
    """What torch.load raised on a cut or garbled file, as one line, when `exc` is that (EOFError, a
    bad pickle or zip, torch's zip reader failing, EINVAL seeking past a cut end), or a file of the
    checkpoint that is missing (a folder whose deletion was cut short); else None. A refusal of the
    weights-only loader is not damage."""
    text = " ".join(str(exc).split())
    if "Weights only load failed" in text:
        return None
    if isinstance(exc, FileNotFoundError):
        return f"missing: {exc.filename or text}"[:300]
    if isinstance(exc, (EOFError, pickle.UnpicklingError, zipfile.BadZipFile)) or "PytorchStreamReader failed" in text or (isinstance(exc, OSError) and exc.errno == errno.EINVAL):
        return f"{type(exc).__name__}: {text}".rstrip(": ")[:300]
    return None


class DamagedCheckpoint(ValueError):
    """A file of a checkpoint is damaged or cut short: a resume goes on to the checkpoint before it."""


@contextlib.contextmanager
def load_errors(folder: Any) -> Iterator[None]:
    """A load's two failures that are the files' fault, as a ValueError naming the folder: an entry
    refused by the weights-only loader (it asks for code), or a file damaged or cut short. Anything
    else is raised as it is. torch.distributed.checkpoint gathers each rank's (error, trace) into a
    CheckpointException, a BaseException: its causes are looked at too."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - re-raised unless the files are at fault
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        causes = [exc, *(f[0] if isinstance(f, tuple) else f for f in getattr(exc, "failures", {}).values())]
        refused = next((e for e in causes if "Weights only load failed" in str(e)), None)
        if refused is not None:
            raise ValueError(f"{folder}: refused: a checkpoint holds only tensors and plain data, an entry asks for more ({refusal_detail(refused)})") from None
        detail = next((d for d in map(damage, causes) if d is not None), None)
        if detail is not None:
            raise DamagedCheckpoint(f"{folder}: a file of this checkpoint is damaged or incomplete ({detail})") from None
        raise


def refusal_detail(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice to load the file unchecked."""
    detail = str(exc).partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0] or str(exc)
    return " ".join(detail.split()).partition(" Please use")[0].partition(" Please file")[0]
