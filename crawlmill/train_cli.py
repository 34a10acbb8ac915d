"""`crawlmill train --config FILE`: Megatron-Core pretraining on packed shards (crawlmill/training/).

    crawlmill train --config tiny --data out/shards --output runs/tiny
    crawlmill train --config tiny --data out/shards --output runs/tiny --resume     # continue it from its last checkpoint
    torchrun --nproc-per-node 8 -m crawlmill.cli train --config 1b --data /shared/shards --output /shared/runs/1b

Options given here override the config file (`--data` its data.shards, `--max-steps` its
max_steps, `--output` its output). Results (the final figures) go to stdout; per-step logs to
stdout from rank 0, RUN/log.jsonl and TensorBoard (RUN/tensorboard). `--data` and `--output` may
be URLs (`s3://bucket/out/shards`, `s3://bucket/runs/tiny`; crawlmill/training/runstore.py).
A run folder that holds a checkpoint is continued with `--resume` or started over with
`--overwrite`; without either it is refused (exit status 2), so that two runs never mix.
`--overwrite` deletes only a run folder (run.json, log.jsonl or checkpoints/ in it) that holds
nothing a run does not write, never one that is, holds or lies inside what the run reads (its
shards, the run `--init-from` names), and only once those inputs are checked.
"""

import json
import math
from pathlib import Path
from typing import Any, List, Optional

import typer

from crawlmill.pathsafety import redact
from crawlmill.training.packages import require_training_packages

from .cli_common import Runtime, fail, out, runtime_verb, user_errors

app = typer.Typer()


def _finite(value: Any) -> Any:
    """`value` with nan and inf as null, at any depth: strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_inputs(train_config: Any) -> None:
    """Before --overwrite deletes the run folder: every shard folder's manifest is one training can
    use, and the --init-from run has a complete checkpoint (as the run itself checks them, later)."""
    from crawlmill.files import as_path, is_url
    from crawlmill.shards.manifest import MANIFEST, load_manifest
    from crawlmill.shards.mmidx import ShardError
    from crawlmill.training.checkpoint_source import find_checkpoint
    from crawlmill.training.config import not_pack_output
    from crawlmill.training.data import ShardFolder, check_counts, check_manifest

    for folder in train_config.data.shards:
        try:
            manifest = load_manifest(folder)
        except (OSError, ValueError) as exc:  # as training.data.open_folders says it
            raise ShardError(as_path(folder) / MANIFEST, f"unreadable manifest: {exc}") from None
        if manifest is None:
            raise not_pack_output(folder)
        check_manifest(manifest, as_path(folder) / MANIFEST)
        if not is_url(folder):  # a URL's .idx files would be downloaded first: the run checks those itself, later
            check_counts(ShardFolder(as_path(folder), manifest, folder))
    if train_config.checkpoint.init_from:
        find_checkpoint(train_config.checkpoint.init_from)


@runtime_verb(
    app,
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill train --config tiny --data out/shards --output runs/tiny`  (the CPU test model)\n\n"
        "* `crawlmill train --config 1b --data out/shards --output runs/1b --resume`  (continue from the last checkpoint)\n\n"
        "* `ray job submit --address http://HEAD:8265 -- crawlmill train --config deepseek-7b --data /shared/shards --output /shared/runs/7b --workers 64`  (Ray Train on a cluster)\n\n"
        "* `torchrun --nproc-per-node 8 --max-restarts 3 -m crawlmill.cli train --config 1b --data /shared/shards --output /shared/runs/1b --resume`  (restarted ranks continue from the last checkpoint)\n\n"
        "* `crawlmill train --config 1b --data out/shards-new --output runs/1b-cont --init-from runs/1b`  (a new run from another run's weights)\n\n"
        "A run folder holding a checkpoint is refused unless `--resume` (continue) or `--overwrite` (start over). "
        "Ray Train restarts failed workers from the last checkpoint `max_restarts` times (the config's key).\n\n"
        "Built-in configs: tiny, 125m, 1b, deepseek-7b, deepseek-67b (training/configs/ in the repository).\n\n"
        "Logs: RUN/log.jsonl, RUN/tensorboard, RUN/run.json; tokens/s and MFU count training steps only "
        "(validation and checkpoint saves left out); memory_gib is the most any rank used so far, beside the estimate the run "
        "starts with (`crawlmill plan --model CONFIG --tokens D` gives it before a run). "
        "Megatron-Core's INFO logs are off: CRAWLMILL_MEGATRON_LOG=INFO shows them.\n\n"
        "Exit status: 0 when the steps asked for are done; 1 when the run diverged (a nan/inf step: nothing of it saved) "
        "or stopped on its stop signal (checkpoint.on_signal, default SIGTERM: the step reached is saved; continue with --resume); "
        "2 for a bad config or data, or a run folder that holds a run."
    ),
)
def train(
    config: str = typer.Option(..., "--config", "-c", help="A training config YAML, or a built-in name: tiny, 125m, 1b, deepseek-7b, deepseek-67b."),
    data: Optional[List[str]] = typer.Option(None, "--data", help="Shard folder(s) to train on: pack output, or Megatron shards given a manifest by `crawlmill shards adopt`; paths or URLs (replaces the config's data.shards)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="The run folder, a path or URL (default: the config's output, else runs/NAME, NAME the config's name)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Train this many steps in all: the schedule's length, replacing the config's train_tokens (said at the start when they differ)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint (from step 0 when it has none yet); without it a folder holding a checkpoint is refused."),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", help="Stop after this many steps of this invocation (with a checkpoint), keeping the whole run's schedule."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Ray Train workers (data-parallel ranks; one GPU each on GPUs)."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Start from the weights of another run's checkpoint (its run folder, or RUN/checkpoints/step-N; path or URL; a Hugging Face model through `crawlmill import`): optimizer, schedule and data start afresh (continued pretraining on new data)."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as JSON and exit."),
    runtime: Runtime = None,  # type: ignore[assignment] - the common options (cli_common)
) -> None:
    """Pretrain a DeepSeek-style GPT with Megatron-Core on packed shards: multi-step LR, checkpoints, exact resume."""
    from crawlmill.files import is_url
    from crawlmill.pipeline.config import check_section, to_json
    from crawlmill.training.config import load_train_config

    overrides: dict = {}
    if data:
        overrides["data"] = {"shards": [d if is_url(d) else str(Path(d).resolve()) for d in data]}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    if workers is not None:
        overrides["workers"] = workers
    if init_from is not None:
        overrides["checkpoint"] = {"init_from": init_from if is_url(init_from) else str(Path(init_from).resolve())}
    with user_errors():
        if not print_config:  # one line naming the extra, not a traceback from the launch
            require_training_packages("crawlmill train")
        train_config = load_train_config(config, overrides)
        check_section(train_config, "train")
        if not train_config.data.shards and not print_config:  # before the run folder is made
            raise ValueError("no shard folders to train on: give --data DIR (`crawlmill pack` output), or data.shards in the config")
        # str, not Path, for a URL (pathlib folds "s3://b" to "s3:/b")
        run_dir = output or (str(train_config.output) if train_config.output else str(Path("runs") / Path(config).stem))
        if print_config:
            print(redact(json.dumps(to_json(train_config), indent=1, ensure_ascii=False)))  # a URL's password is never printed
            return
        if runtime.overwrite and not resume:
            from crawlmill.pipeline.output_folder import RUN_MARKERS, STAGE_MARKERS, check_output_folder, check_output_not_input, config_paths, reset_output

            check_output_not_input(run_dir, config_paths(train_config), "train")  # never deleting its shards or the --init-from run
            folder = {"markers": RUN_MARKERS + STAGE_MARKERS, "what": "training run folder"}  # a pipeline's train folder is one too
            check_output_folder(run_dir, overwrite=True, **folder)  # a folder --overwrite may delete,
            check_inputs(train_config)  # and what the run reads checked before the deletion, not after
            reset_output(run_dir, **folder)
        from crawlmill.training.launch import launch
        from crawlmill.training.stopsignal import TrainingStopped

        try:
            summary = launch(train_config, run_dir, resume=resume, stop_after=stop_after, ray_options=runtime.ray_options())
        except (ArithmeticError, TrainingStopped) as exc:  # diverged (trainer.TrainingDiverged), or stopped by a signal: rerun
            raise fail(str(exc), 1) from None
    if summary is None:  # Ray Train v1 returns nothing (its workers printed their figures)
        out.print(f"[green]train done[/green] → {run_dir} (log.jsonl, checkpoints/)", highlight=False)
        return
    out.print(json.dumps(_finite({k: v for k, v in summary.items() if k != "plan"}), indent=1), highlight=False)
    step, total = summary["step"], summary["total_steps"]
    if summary.get("already_finished"):
        out.print(f"[green]already finished[/green]: {run_dir} is at step {step:,} of {total:,}; nothing trained", highlight=False)
    elif step < total:
        out.print(f"[green]stopped[/green] at step {step:,} of {total:,} (--stop-after), with its checkpoint → {run_dir}; continue with --resume", highlight=False)
    else:
        out.print(f"[green]train done[/green] → {run_dir} (log.jsonl, checkpoints/)", highlight=False)
