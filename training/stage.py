"""The pipeline's train stage: `crawlmill run` ends with pretraining when its config has a `train:`
section (the section is a training config: `train: {base: tiny, max_steps: 100}`).

It reads pack's shards (the section's own data.shards are added after them) and trains into the
stage folder, which is the run folder (run.json, log.jsonl, checkpoints/; with an `s3://`
output_dir, both the shards and the run folder are URLs: training/runstore.py). The training is one
step of one Ray task: Ray Train workers where the run has more than one worker or the cluster has
GPUs, else in that task. A rerun resumes from the last checkpoint; a finished run is not redone.
A SIGTERM or Ctrl-C to the driver stops the trainer with a checkpoint of the step it reached
(TrainStage.run), as it stops `crawlmill train`. Ray starts the task again when its worker dies
(max_retries): such an attempt resumes from the last checkpoint and says so, but once the stop was
asked it does not train at all, and the driver says that the step the stop reached was not reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sys
import uuid
from typing import Any

from crawlmill.files import as_path, list_files, remove_file
from crawlmill.pipeline.output_folder import RUN_MARKERS, STAGE_MARKERS
from crawlmill.pipeline.ray_tasks import RayOptions
from crawlmill.pipeline.runner import StageContext, StepFailed, Task
from crawlmill.pipeline.stage import Stage, StageInputError, StageResult

from .config import TrainConfig
from .packages import MissingTrainingPackages, require_training_packages


# The error of a train task that stopped on a stop signal or its driver's stop request (the driver
# reads the step in it: a failed step keeps its tasks' errors as text only).
STOPPED_AS_ASKED = "stopped after step {step}, with its checkpoint, on a stop signal or the driver's stop request"
# The error of a train task that Ray started again after its worker died, and that found the driver's
# stop request already there: it does not train (it would start from the last checkpoint, step 0 if
# none, and save its first step as the step the stop reached); the driver says where a rerun starts.
NOT_SAVED = "the trainer's worker died after the stop request ({asked}), before it said which step it saved; its last checkpoint: {checkpoint}"


class StopNotSaved(RuntimeError):
    """A stop the driver asked for whose step was not saved: the worker training died first."""


def last_checkpoint(run_dir: str) -> str:
    """The run's newest complete checkpoint, as a message names it."""
    from .checkpoint import step_name
    from .checkpoint_source import run_checkpoint
    from .runstore import RunStore

    try:
        found = run_checkpoint(RunStore(run_dir))
    except Exception as exc:  # a message only: a store's hiccup or a damaged checkpoint is said, not raised instead of the stop's error
        return f"not known ({type(exc).__name__}: {exc})"
    return f"step {found[1]['step']} ({step_name(found[1]['step'])})" if found else "none"


def resume_from(checkpoint: str) -> str:
    """Where a rerun starts, said of `last_checkpoint`'s answer."""
    return "from step 0 (no checkpoint was saved yet)" if checkpoint == "none" else f"from its last checkpoint, {checkpoint}"


def _begin_attempt(stop_request: str | None, run_dir: str) -> None:
    """Before an attempt of the train task trains: one that Ray started again after its worker died
    says so, and does not train when the driver asked the run to stop before (StopNotSaved)."""
    from .stopsignal import StopRequest

    request = StopRequest(stop_request)
    attempt = request.begin_attempt()
    if attempt is None or attempt < 2:
        return
    asked = request.asked()
    if asked is not None:
        raise StopNotSaved(NOT_SAVED.format(asked=asked, checkpoint=last_checkpoint(run_dir)))
    print(f"train: attempt {attempt} of the train task (Ray started it again: the worker of the one before died); it trains {resume_from(last_checkpoint(run_dir))}",
          file=sys.stderr, flush=True)  # fmt: skip


def train_task(config_data: dict[str, Any], run_dir: str, address: str | None, stop_request: str | None = None) -> dict[str, Any]:
    """In a Ray task: train (resuming what an interrupted attempt left); the last figures. The run
    stops, with a checkpoint of the step it reached, when the file `stop_request` appears (the
    driver's stop, TrainStage.run): TrainingStopped, its `step` that step."""
    from crawlmill.pipeline.config import build
    from crawlmill.pipeline.ray_tasks import cluster_has_gpus

    from .launch import launch
    from .runlog import read_log, read_run
    from .stopsignal import TrainingStopped

    try:  # a worker without the train extra (the pipeline's image): the stage's one error, exit status 2
        require_training_packages("the train stage")
    except MissingTrainingPackages as exc:
        raise StageInputError(str(exc)) from None
    _begin_attempt(stop_request, run_dir)
    config = build(TrainConfig, config_data, "train")
    options = RayOptions(address=address)
    try:
        if config.workers == 1 and not cluster_has_gpus(options):
            summary = launch(config, run_dir, resume=True, stop_request=stop_request)
        else:  # workers of their own (a Ray task has no GPU): Ray Train, from this task
            config = dataclasses.replace(config, workers=max(config.workers, 1))
            summary = launch(config, run_dir, resume=True, ray_options=options, force_ray=True, stop_request=stop_request)
    except TrainingStopped as exc:
        summary = {"stopped": str(exc), "step": exc.step}
    if summary is None:  # Ray Train v1 returns no value: this attempt's records in the log say whether it stopped
        marks = [r for r in read_log(run_dir) if r.get("kind") in ("stopped", "end", "resumed", "initialized")]
        if marks and marks[-1]["kind"] == "stopped":
            summary = {"stopped": "stopped", "step": marks[-1]["step"]}
    if summary and "stopped" in summary:  # a failed task, so that no marker says the stage is done
        stopped = TrainingStopped(STOPPED_AS_ASKED.format(step=summary["step"]))
        stopped.step = summary["step"]
        raise stopped
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
        """A SIGTERM (`ray job stop`, Kubernetes) or Ctrl-C reaches this driver, not the trainer in
        its Ray task: while it trains, the first one asks the trainer to save the step it is at and
        stop (a stop request file in the run folder, stopsignal.ForwardStop), and the driver unwinds
        once it has (cli_common.resumable: exit 143, or 130 for Ctrl-C); a second one stops at once.
        With stop signals off (`checkpoint.on_signal: null`) a signal interrupts the driver at once."""
        from .checkpoint import step_name
        from .stopsignal import ForwardStop, StopRequest  # torch: imported when the stage runs

        for stale in list_files(ctx.work, "stop-*"):  # a killed driver's request (this run holds the folder's lock)
            remove_file(stale)
        request = StopRequest(str(ctx.work / f"stop-{uuid.uuid4().hex}") if self.config.checkpoint.on_signal else None)
        job = Task("train", (dataclasses.asdict(self.config), str(ctx.output), ctx.ray_options.address, request.path))
        forward = ForwardStop(request)
        try:
            with forward if request.path else contextlib.nullcontext():
                result = ctx.step("train", train_task, [job], title="train", said_by_stage=("TrainingStopped", "StopNotSaved"), unit="steps",
                                  poll_units=lambda: self._steps_so_far(str(ctx.output)))["train"]  # fmt: skip
        except StepFailed as failed:
            detail = failed.failures[0][1] if failed.failures else ""
            said = re.search(STOPPED_AS_ASKED.format(step=r"(\d+)"), detail)
            if forward.which is None:
                raise
            if said is None:  # the stop's step was not saved: said plainly, never as a stop that worked
                if f"{StopNotSaved.__name__}: " not in detail:  # another failure (the worker died and Ray had no attempt left...): a failed task, exit 1
                    print(f"train: the trainer failed after the stop request ({forward.which}), without saving the step it reached", file=sys.stderr, flush=True)
                    raise
                print(f"train: the trainer's worker died after the stop request ({forward.which}), before it said which step it saved: the steps since its "
                      f"last checkpoint are lost; rerun the same command to train {resume_from(last_checkpoint(str(ctx.output)))}", file=sys.stderr, flush=True)  # fmt: skip
                raise forward.interrupt() from None
            step = int(said.group(1))
            print(f"train: the run saved step {step} (checkpoint {step_name(step)} in {ctx.output}) and stopped; rerun the same command to resume from it", file=sys.stderr, flush=True)
            raise forward.interrupt() from None
        finally:
            if request.path:  # the request, if asked, and the attempts' count: the task has ended
                request.remove()
        if forward.which is not None:
            print(f"train: the run reached its last step before the stop ({forward.which}) took effect", file=sys.stderr, flush=True)
        return {
            "stage": "train", "parts": 1, "in": result["steps"], "kept": result["steps"], "dropped": {}, "quarantined": 0,
            "counters": {"steps": result["steps"], "tokens": result["tokens"]},
            "final": {"loss": result["loss"], "valid": result["valid"]},
        }  # fmt: skip

    def _steps_so_far(self, run_dir: str) -> tuple[int, int]:
        """The progress bar's (steps logged, the run's length): the length from run.json once the
        trainer wrote it, before that as this config plans it on one data-parallel rank."""
        from .run_plan import plan_run
        from .runlog import steps_so_far

        done, total = steps_so_far(run_dir)
        if not total:
            with contextlib.suppress(ValueError):
                total = plan_run(self.config, 1).total_steps
        return done, total

    def report(self, result: StageResult) -> list[str]:
        stats = result.stats or {}
        final = stats.get("final", {})
        valid = final.get("valid") or {}
        shown = f"; validation loss {valid['loss']:.4f}" + (f", {valid['bpb']:.4f} bits per byte" if "bpb" in valid else "") if valid else ""
        done = "train already done" if result.already_done else "train done"
        return [f"[green]{done}[/green] → {result.output_dir}: {stats.get('counters', {}).get('steps', 0):,} steps, {stats.get('counters', {}).get('tokens', 0):,} tokens{shown}"]
