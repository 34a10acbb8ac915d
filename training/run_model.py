"""A training run's model outside training, in this process: its shape from run.json, the checkpoint
a user names, its tokenizer (the shards' or the imported model's), and the Megatron model with that
checkpoint's weights (for evaluation, tests and `crawlmill import`'s writer, which needs Megatron's
model-parallel state).

    model_config, vocab, info = run_model_config("runs/1b")
    with one_process_model_parallel():
        model, folder, step = load_run_model("runs/1b", "step-00002000", info)
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch.distributed as dist

from crawlmill.files import as_path, read_json
from crawlmill.shards.manifest import folder_beside, load_manifest, tokenizer_folder

from .checkpoint import CHECKPOINTS, META, step_folder
from .checkpoint_source import load_weights
from .model_config import ModelConfig
from .runlog import RUN_FILE


@contextlib.contextmanager
def one_process_model_parallel() -> Iterator[None]:
    """A one-rank process group with Megatron's model-parallel state (sizes 1), for a model built
    in this process; an existing one-rank group is used as it is."""
    from megatron.core import parallel_state

    from .process_group import init_distributed, release_distributed, seed_everything

    _, world, made = init_distributed()
    if world != 1:
        release_distributed(made)
        raise ValueError(f"export, import and eval run in one process, not in a group of {world}")
    ours = not parallel_state.model_parallel_is_initialized()
    if ours:
        parallel_state.initialize_model_parallel(1, 1)
    seed_everything(0)  # also readies Megatron's RNG tracker (compat.py), which building asks for
    try:
        yield
    finally:
        if ours:
            parallel_state.destroy_model_parallel()
        release_distributed(made)


def run_model_config(run: str) -> tuple[ModelConfig, int, dict[str, Any]]:
    """(the model's shape, its padded vocabulary, the whole run.json) of a run folder, path or URL."""
    path = as_path(run) / RUN_FILE
    if not path.is_file():
        if not as_path(run).exists():
            raise FileNotFoundError(f"{run}: no such run folder")
        inside = as_path(run) / "train"  # a `crawlmill run` output folder: its train stage's folder is the run
        hint = f"; the run of this output's train stage is {str(run).rstrip('/')}/train" if (inside / RUN_FILE).is_file() else ""
        raise FileNotFoundError(f"{run}: no {RUN_FILE} (a `crawlmill train` run folder){hint}")
    info = read_json(path)
    return ModelConfig(**info["config"]["model"]), int(info["model"]["vocab_size"]), info


def checkpoint_source(run: str, checkpoint: str | None) -> tuple[str, str]:
    """(the checkpoint or run folder to read, the option it came from, for errors): `checkpoint` a
    step folder's name (step-N) of `run`, a checkpoint folder, or None for the run's newest complete one."""
    if checkpoint is None:
        return run, "run"
    named = step_folder(as_path(run) / CHECKPOINTS / checkpoint)
    source = str(named) if "/" not in checkpoint and named.is_dir() else str(step_folder(as_path(checkpoint)))
    if not (as_path(source) / META).is_file():
        folder = as_path(run) / CHECKPOINTS
        steps = sorted(p.name for p in folder.iterdir() if p.name.startswith("step-") and (p / META).is_file()) if folder.is_dir() else []
        raise FileNotFoundError(
            f"--checkpoint {checkpoint}: not a complete checkpoint of {run} (a step-N folder of its {CHECKPOINTS}/, or a checkpoint folder, with its {META}); "
            f"its complete ones: {', '.join(steps) if steps else 'none'}"
        )
    return source, "--checkpoint"


def load_run_model(run: str, checkpoint: str | None, info: dict[str, Any]) -> tuple[Any, str, int]:
    """(the run's Megatron model with a checkpoint's weights, the checkpoint, its step): `checkpoint`
    a step folder's name (step-N), a checkpoint folder, or None for the newest complete one.
    Needs one_process_model_parallel()."""
    from .model import build_model

    config = info["config"]
    source, label = checkpoint_source(run, checkpoint)
    model = build_model(ModelConfig(**config["model"]), int(info["model"]["vocab_size"]), config["precision"], initialize=False)
    folder, step = load_weights(model, source, 0, 1, bool(config["checkpoint"].get("trusted")), dist.barrier, label=label)
    return model, folder, step


def run_tokenizer_entry(run: str, info: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """(the tokenizer entry, its folder) of a run: its shards' manifest's, else, for an imported
    run, the one import copied from the model's folder (import_hf.copy_tokenizer); None if neither."""
    shards = info["config"]["data"]["shards"]
    folder = (shards[0] if load_manifest(shards[0]) is not None else moved_shards(run, shards[0])) if shards else None
    manifest = load_manifest(folder) if folder is not None else None
    if manifest is not None:
        return manifest["tokenizer"], tokenizer_folder(manifest, folder)
    imported = (info.get("imported") or {}).get("tokenizer")
    return (imported, str(as_path(run) / imported["path"])) if imported else None


def moved_shards(run: str, recorded: str) -> str | None:
    """The shard folder a run trained on when it is no longer where the run recorded it (the
    output moved since: pipeline/relocation.py): the folder of that name beside the run, if its
    content is the one the run's last checkpoint trained on (its data order's shard checksums)."""
    from .checkpoint_source import run_checkpoint
    from .data import open_folders
    from .runstore import RunStore

    beside = str(folder_beside(run, recorded))
    found = run_checkpoint(RunStore(run)) if load_manifest(beside) is not None else None
    trained = ((found[1].get("data_order") or {}).get("shards") or []) if found else []
    return beside if trained and open_folders([beside])[0].content in trained else None
