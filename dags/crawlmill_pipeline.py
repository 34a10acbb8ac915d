"""Airflow DAG ``crawlmill_pipeline``: crawlmill's stages as Ray jobs on a Ray cluster.

What it does
    Each pipeline stage is an Airflow task that runs ``crawlmill run CONFIG --only STAGE`` as a Ray
    job (crawlmill_ray.py: submission, log copying, retries, attaching to a job a dead worker left).
    The tasks are the stages of crawlmill's one pipeline list
    (``crawlmill.pipeline.definition.PIPELINE``; today ``ingest``, ``filter``, ``dedup``,
    ``quality``, ``remix``, ``tokenizer``, ``pack``, ``train``), in its order. Each run of per-dump
    stages forms a task group mapped over the config's ``dumps.ids`` (task ``dumps`` reads them; one
    mapped instance per dump, ``--dump ID`` added; with no ``dumps:`` section, one instance for the
    config's inputs): ``per_dump_ingest`` (ingest, filter), then dedup over every dump, then
    ``per_dump_quality`` (each dump's parts of dedup's output), then remix, tokenizer, pack and
    train, one task each.
    A stage added to the list is a task here with no change to this file.

    Optional stages (``optional=True`` in their ``StageSpec``: today ``quality`` and ``train``)
    run only when the config has their section, as in ``crawlmill run``. Without it their task
    reads the config when it runs, submits no Ray job and ends "skipped" (each dump's, in a mapped
    group); the stage after one has the trigger rule ``none_failed``, so it runs after that skip but
    not after a failure (every other task keeps ``all_success``: a failure anywhere stops every
    later stage).

    New dumps as Common Crawl publishes them: the DAG ``crawlmill_new_dump`` (crawlmill_new_dump.py).

Deploying
    1. Install Airflow beside crawlmill: ``pip install -e ".[pipeline,airflow]" -c constraints.txt``
       (the DAG reads the stage list from crawlmill, which imports only config classes for it, and
       submits with ``ray[default]``'s client; the stages run on the Ray cluster). Nothing in
       crawlmill imports Airflow.
    2. Put this file in the DAGs folder (``[core] dags_folder``, or point that setting at this
       repository's ``dags/``).
    3. Run a Ray cluster whose nodes have crawlmill installed, so that ``crawlmill`` is on the PATH
       of the process that ran ``ray start`` (``docker/ray-worker.Dockerfile`` builds that image).
       Inputs, the config and the output folder must be on storage every Ray node sees (or an
       fsspec URL), unless ``working_dir`` ships the config.
    4. Tell the DAG where the cluster is: the ``ray_address`` param per run, else the Airflow
       Variable ``crawlmill_ray_address``, else the environment variable ``CRAWLMILL_RAY_ADDRESS``
       of the Airflow worker, else ``http://127.0.0.1:8265``. Use the dashboard/job address
       (``http://HEAD:8265``). Note: Ray's client lets ``RAY_API_SERVER_ADDRESS`` or
       ``RAY_ADDRESS`` in the worker's environment override any address it is given; the task
       warns when they are set. With Ray's token authentication on (as docs/ray.md sets it up),
       the Airflow worker's environment needs ``RAY_AUTH_MODE=token`` and the cluster's token
       (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``); docker/compose.yaml passes both.
    5. Trigger it with a config: ``airflow dags trigger crawlmill_pipeline --conf
       '{"config": "/shared/configs/cc-2024-22.yaml"}'``, or from the UI's trigger form.

Params (``dag_run.conf``)
    config       Path of a crawlmill pipeline config YAML, as ``crawlmill run CONFIG.yaml`` takes
                 it (see configs/demo.yaml). Resolved on the Ray cluster: an absolute path on shared
                 storage, relative to ``working_dir``, or an fsspec URL (``s3://bkt/configs/run.yaml``:
                 its relative paths are then relative to ``s3://bkt/configs/``, for the DAG and the
                 jobs alike). Required (defaults to the environment variable ``CRAWLMILL_CONFIG`` of
                 the DAG processor when that is set).
    ray_address  Ray dashboard/job address, e.g. ``http://ray-head:8265`` (default: see step 4).
    working_dir  Optional ``runtime_env`` working_dir of the jobs: a local folder of the Airflow
                 worker (uploaded by Ray's client, honouring .gitignore) or a remote zip URI
                 (``s3://.../crawlmill.zip``). Jobs run inside it.

Schedule, retries
    No schedule by default (``schedule=None``: runs are triggered) and no catchup; at most one
    run at a time, since two runs of one config would write the same output folders. To run it
    on a cron, set ``CRAWLMILL_DAG_SCHEDULE`` (e.g. ``"0 3 * * 0"``, Sundays 03:00) and
    ``CRAWLMILL_CONFIG`` in the environment of the DAG processor and scheduler, or edit
    ``schedule=`` below. Each task retries ``CRAWLMILL_DAG_RETRIES`` times (default 2) after
    ``CRAWLMILL_DAG_RETRY_DELAY_S`` seconds (default 300), except after a job whose crawlmill
    exited with status 2 (bad input or config: an unknown key, a missing input), which no retry
    can fix: that fails its task at once, with the job's last log lines (crawlmill_follow.py).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG, TriggerRule, chain, task, task_group
from crawlmill_config import dumps_section, read_run_config, skip_if_left_out
from crawlmill_ray import RayJobOperator, dag_settings, ray_job_task

from crawlmill.pipeline.definition import PIPELINE

DAG_ID = "crawlmill_pipeline"


def stage_entrypoint(stage: str) -> str:
    """The Ray job of one stage (a Jinja template, rendered per run; `shquote` quotes for the shell).

    Without --no-progress: in a job's log (no terminal) crawlmill's progress is plain lines, one when
    a step starts, at most one per $CRAWLMILL_PROGRESS_INTERVAL seconds (default 10) as its parts
    finish, and one when it ends (pipeline/progress.py), which the task copies into its log."""
    return f"crawlmill run {{{{ params.config | shquote }}}} --only {stage}"


# The pipeline's stages in order (crawlmill's one list): task id -> entrypoint of its Ray job.
STAGES: dict[str, str] = {stage: stage_entrypoint(stage) for stage in PIPELINE.names}
SEGMENTS = PIPELINE.segments()  # runs of per-dump stages (a mapped task group each) and joint ones

SCHEDULE = os.environ.get("CRAWLMILL_DAG_SCHEDULE") or None  # a cron, e.g. "0 3 * * 0"; None: triggered runs only
DEFAULT_CONFIG = os.environ.get("CRAWLMILL_CONFIG") or None
if SCHEDULE and not DEFAULT_CONFIG:
    raise ValueError(
        f"CRAWLMILL_DAG_SCHEDULE={SCHEDULE!r} needs CRAWLMILL_CONFIG: scheduled runs have no conf to name the config"
    )


class OptionalStageOperator(RayJobOperator):
    """An optional stage's task: skipped, with no Ray job, when the run config leaves the stage out."""

    def __init__(self, *, stage: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stage = stage

    def execute(self, context: Any) -> str:
        # Decided here, at run time, from the config the jobs would read: the DAG is parsed with no run's config.
        params = context["params"]
        skip_if_left_out(self.stage, params["config"], params.get("working_dir"))
        return super().execute(context)


def stage_task(stage: str, **kwargs: Any) -> RayJobOperator:
    """One stage's task: an optional stage's task skips itself without its section, and the stage after an
    optional one runs after that skip. none_failed, not none_failed_min_one_success: the skipped
    stage is its only upstream (no success), yet it must run; a failed upstream still stops it."""
    index = PIPELINE.names.index(stage)
    if index and PIPELINE.stages[index - 1].optional:
        kwargs["trigger_rule"] = TriggerRule.NONE_FAILED
    if PIPELINE.get(stage).optional:
        kwargs.update(operator=OptionalStageOperator, stage=stage)
    return ray_job_task(stage, STAGES[stage], **kwargs)


@task
def dumps(params: dict[str, Any] | None = None) -> list[str]:
    """The config's dumps.ids (validated as crawlmill does); [""]: no dumps section, one run of the inputs."""
    data, _ = read_run_config(params["config"], params.get("working_dir"))
    ids = dumps_section(data).ids
    return ids or [""]


def per_dump_group(stages: list[str]) -> Any:
    """A task group of per-dump stages, in order, for one dump; mapped over the run's dumps."""

    @task_group(group_id=f"per_dump_{stages[0]}")
    def group(dump: str) -> None:
        chain(*[stage_task(stage, dump=dump) for stage in stages])

    return group


with DAG(
    dag_id=DAG_ID,
    description="crawlmill: Common Crawl -> pretraining data, each stage a Ray job",
    doc_md=__doc__,
    schedule=SCHEDULE,
    tags=["crawlmill", "ray", "pretraining-data"],
    **dag_settings(),
) as dag:
    ids = dumps()
    steps: list[Any] = []
    for mapped, stages in SEGMENTS:
        steps += [per_dump_group(stages).expand(dump=ids)] if mapped else [stage_task(stage) for stage in stages]
    chain(*steps)
