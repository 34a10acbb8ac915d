"""A run's checkpoint found, and a run started from another run's weights: the newest complete
checkpoint of a run folder (`run_checkpoint`), a fresh run refused where one is (`RunExists`), a
checkpoint named by a run folder or its step folder (`find_checkpoint`, for `checkpoint.init_from`,
`crawlmill export` and `crawlmill eval`), and its weights loaded alone (`load_weights`).
"""

from __future__ import annotations

from typing import Any, Callable

from crawlmill.files import AnyPath, as_path, read_json

from .checkpoint import CHECKPOINTS, META, Checkpointer, latest_checkpoint, step_folder
from .layout import ResumeLayout
from .runstore import RunStore
from .sharing import ElsewhereFailed


class RunExists(FileExistsError):
    """Training into a run folder that holds a checkpoint without resuming it."""


def run_checkpoint(store: RunStore) -> tuple[AnyPath, dict[str, Any]] | None:
    """The newest complete checkpoint of a run folder (its URL's, for a URL run) and its meta."""
    return latest_checkpoint(store.local / CHECKPOINTS, store.remote / CHECKPOINTS if store.remote is not None else None)


def refuse_to_overwrite(store: RunStore) -> None:
    """Raise RunExists when the run folder holds a complete checkpoint: a fresh run there would mix
    its log and checkpoints with the earlier run's (keep-K could delete the earlier run's newest)."""
    found = run_checkpoint(store)
    if found is not None:
        folder, meta = found
        raise RunExists(
            f"{store.name} already holds a training run (its last checkpoint: {folder.name}, step {meta.get('step')}): "
            "continue it with --resume, or start over with --overwrite (which deletes the folder)"
        )


def find_checkpoint(source: str, label: str = "checkpoint.init_from") -> tuple[AnyPath, dict[str, Any]]:
    """(the folder, its meta) of `source`: one checkpoint folder (RUN/checkpoints/step-N, with its
    meta.json) or a run folder (its newest complete checkpoint), a path or URL; `label` names the
    source in errors (the option it came from)."""
    folder = step_folder(as_path(source))
    if (folder / META).is_file():
        return folder, read_json(folder / META)
    store = RunStore(source)
    found = latest_checkpoint(store.local / CHECKPOINTS, store.remote / CHECKPOINTS if store.remote is not None else None)
    if found is None:
        raise FileNotFoundError(f"{label} {source}: no complete checkpoint there (a run folder, or its checkpoints/step-N)")
    return found


def load_weights(model: Any, source: str, rank: int, world: int, trusted: bool, barrier: Callable[[], None], label: str = "checkpoint.init_from") -> tuple[str, int]:
    """Fill `model` with the weights of another run's checkpoint, for a run that starts from them
    (checkpoint.init_from): `source` as find_checkpoint takes it. Only the weights: the optimizer,
    RNG states, data position and schedule start afresh. dist_checkpointing reshards by global key
    (another world size or tensor parallel layout loads). Returns the checkpoint's location and
    step. Collective."""
    folder, meta = find_checkpoint(source, label)
    store = RunStore(str(as_path(folder).parent.parent))
    reader = Checkpointer(store.local, rank, world, 1, False, barrier, remote=store.remote, trusted=trusted)
    try:
        state, _ = reader.load(folder, meta, ResumeLayout(optimizer_sharding=None), {"model": model.sharded_state_dict()})  # weights alone: any layout, either backend
        model.load_state_dict(state["model"])
    except (OSError, ValueError, ElsewhereFailed, KeyboardInterrupt, SystemExit):  # ValueError: refused or damaged files (sharded_io.load_errors)
        raise
    except BaseException as exc:  # noqa: BLE001 - torch's CheckpointException is a BaseException: shapes or keys that differ
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        detail = lines[-1].rsplit("CheckpointingException: ", 1)[-1][:500]  # each rank's traceback ends with the cause
        raise ValueError(f"{label} {folder}: its weights do not fit this run's model ({detail})") from None
    return str(folder), int(meta["step"])
