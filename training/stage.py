"""The pipeline's train stage: `crawlmill run` ends with pretraining when its config has a `train:`
section (the section is a training config: `train: {base: tiny, max_steps: 100}`).

It reads pack's shards (the section's own data.shards are added after them) and trains into the
stage folder, which is the run folder (run.json, log.jsonl, checkpoints/; with an `s3://`
output_dir, both the shards and the run folder are URLs: training/runstore.py). The training is one
step of one Ray task: Ray Train workers where the run has more than one worker or the cluster has
GPUs, else in that task. A rerun resumes from the last checkpoint; a finished run is not redone.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from crawlmill.files import as_path
from crawlmill.pipeline.output_folder import RUN_MARKERS, STAGE_MARKERS
from crawlmill.pipeline.ray_tasks import RayOptions
from crawlmill.pipeline.runner import StageContext, Task
from crawlmill.pipeline.stage import Stage, StageResult

from .config import TrainConfig


def train_task(config_data: dict[str, Any], run_dir: str, address: str | None) -> dict[str, Any]:
    """In a Ray task: train (resuming what an interrupted attempt left); the last figures."""
    from crawlmill.pipeline.config import build
    from crawlmill.pipeline.ray_tasks import cluster_has_gpus

    from .launch import launch
    from .runlog import read_run

    config = build(TrainConfig, config_data, "train")
    options = RayOptions(address=address)
    if config.workers == 1 and not cluster_has_gpus(options):
        summary = launch(config, run_dir, resume=True)
    else:  # workers of their own (a Ray task has no GPU): Ray Train, from this task
        config = dataclasses.replace(config, workers=max(config.workers, 1))
        summary = launch(config, run_dir, resume=True, ray_options=options, force_ray=True)
    run = read_run(run_dir)
    last = run["train"][-1] if run["train"] else {}
    return {
        "steps": int(last.get("step", (summary or {}).get("step", 0))),
        "tokens": int(last.get("tokens", 0)),
        "loss": last.get("loss"),
        "valid": run["valid"][-1] if run["valid"] else None,
    }


class TrainStage(Stage):
    name = "train"
    output_markers = STAGE_MARKERS + RUN_MARKERS  # the run folder of a `crawlmill train` is resumed (and deleted by --overwrite) too

    def __init__(self, config: TrainConfig) -> None:
        super().__init__(config)
        config.check()

    def sources(self) -> list[str]:
        return [str(as_path(folder) / "manifest.json") for folder in self.config.data.shards]

    def fingerprint(self) -> dict[str, Any]:
        settings = json.loads(json.dumps(dataclasses.asdict(self.config), default=str))
        settings["data"].pop("shards")
        settings["data"].pop("check_on_resume")
        settings["checkpoint"].pop("on_preemption")
        for key in ("output", "log_interval", "workers", "max_restarts"):  # where and how it runs, not what it trains
            settings.pop(key)
        return settings

    def run(self, ctx: StageContext) -> dict[str, Any]:
        job = Task("train", (dataclasses.asdict(self.config), str(ctx.output), ctx.ray_options.address))
        result = ctx.step("train", train_task, [job], title="train")["train"]
        return {
            "stage": "train", "parts": 1, "in": result["steps"], "kept": result["steps"], "dropped": {}, "quarantined": 0,
            "counters": {"steps": result["steps"], "tokens": result["tokens"]},
            "final": {"loss": result["loss"], "valid": result["valid"]},
        }  # fmt: skip

    def report(self, result: StageResult) -> list[str]:
        stats = result.stats or {}
        final = stats.get("final", {})
        valid = final.get("valid") or {}
        shown = f"; validation loss {valid['loss']:.4f}" + (f", {valid['bpb']:.4f} bits per byte" if "bpb" in valid else "") if valid else ""
        done = "train already done" if result.already_done else "train done"
        return [f"[green]{done}[/green] → {result.output_dir}: {stats.get('counters', {}).get('steps', 0):,} steps, {stats.get('counters', {}).get('tokens', 0):,} tokens{shown}"]
