"""Where a training run's ranks come from: torchrun, Ray Train, or this process.

    crawlmill train --config tiny --data out/shards --output runs/tiny              # this process
    crawlmill train --config tiny --data out/shards --output runs/tiny --workers 2  # 2 Ray Train workers (local Ray)
    ray job submit --address http://HEAD:8265 -- crawlmill train --config 1b --data /shared/shards --output /shared/runs/1b --workers 8
    torchrun --nproc-per-node 8 -m crawlmill.cli train --config 1b --data /shared/shards --output /shared/runs/1b

Under torchrun (its environment names the rank and world) every process trains as one rank. Else,
on a Ray cluster (`--address`, or RAY_ADDRESS as `ray job submit` sets it), with more than one
worker, or where the cluster has GPUs, Ray Train's TorchTrainer starts `workers` workers (one GPU
each when there are GPUs). Otherwise (one CPU worker, no cluster) the run is this process.

A run folder that holds a checkpoint is trained into only with `resume` (else checkpoint_source.RunExists).
When a Ray Train worker fails (its process or node dies), Ray Train restarts the workers up to
`max_restarts` times (node preemptions as often as Ray's FailureConfig allows), and they continue
from the run's last checkpoint. Under torchrun, its own `--max-restarts` does the same when the
command has `--resume` (which starts from step 0 when there is no checkpoint yet).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from crawlmill.pipeline.ray_tasks import RAY_TRAIN_AHEAD, RayOptions, cluster_has_gpus, run_torch_workers

from .checkpoint_source import refuse_to_overwrite, run_checkpoint
from .config import TrainConfig
from .runstore import RunStore, run_location
from .stopsignal import TrainingStopped


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or ("WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ and "RANK" in os.environ)


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    """One Ray Train worker: the process group is Ray Train's; the config travels as JSON. It always
    resumes (the driver refused a run folder it must not continue), so that the workers Ray Train
    restarts after a failure continue from the run's last checkpoint. Its summary: rank 0's reaches
    the driver (Ray Train's return_value)."""
    from crawlmill.pipeline.config import build

    from .trainer import train

    config = build(TrainConfig, job["config"], "train")
    try:
        return train(config, job["run_dir"], resume=True, stop_at=job["stop_at"], ray_train=True, stop_request=job.get("stop_request"))
    except TrainingStopped as stopped:  # asked for (every rank stops at the same step): no failure for Ray Train to restart the workers after
        return {"stopped": str(stopped), "step": stopped.step}


def launch(
    config: TrainConfig, run_dir: str | Path, resume: bool = False, stop_after: int | None = None,
    ray_options: RayOptions | None = None, force_ray: bool = False, stop_request: str | None = None,
) -> dict[str, Any] | None:
    """Train `config` into `run_dir` (see the module docstring); returns the summary of this process,
    or of Ray Train's rank 0 (None from Ray Train v1, which returns nothing: the figures are in
    run_dir/log.jsonl).
    `force_ray`: Ray Train workers even for one worker (a Ray task, which has no GPU, asks so).
    `run_dir` may be a URL (runstore.py); Ray Train's own files then go to the local staging folder.
    `stop_request`: the file that stops the run when it appears (trainer.train). Stopped so, the run
    raises TrainingStopped (in this process), or its Ray Train workers return {"stopped": message, "step": step}."""
    from .trainer import check_stop_after, train

    check_stop_after(stop_after)
    options = ray_options or RayOptions()
    on_cluster = bool(options.address or os.environ.get("RAY_ADDRESS"))
    if under_torchrun() or (config.workers == 1 and not on_cluster and not force_ray):
        return train(config, run_dir, resume, stop_after, stop_request=stop_request)
    store = RunStore(run_dir)
    if not resume:
        refuse_to_overwrite(store)
    found = run_checkpoint(store) if resume else None
    start = int(found[1]["step"]) if found is not None else 0
    # stop_after counts from where this launch starts, not from where a restart does
    job = {"config": dataclasses.asdict(config), "run_dir": run_location(run_dir), "stop_at": None if stop_after is None else start + stop_after,
           "stop_request": stop_request}
    RAY_TRAIN_AHEAD[0] = True  # before a local Ray starts (cluster_has_gpus): one Ray Train runs on quietly
    gpus = cluster_has_gpus(options)
    local = store.local.resolve()
    return run_torch_workers(_worker, job, config.workers, gpus, str(local / "ray_train"), local.name, options, config.max_restarts)
