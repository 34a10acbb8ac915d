"""Airflow DAG ``crawlmill_new_dump``: each Common Crawl dump, once published, appended to a finished run.

What it does, each scheduled run
    1. ``find_new_dumps`` reads Common Crawl's list of crawls (the config's ``dumps.collinfo_url``,
       default https://index.commoncrawl.org/collinfo.json) and the output folder's state
       (``<output_dir>/_dumps.json``: the joint run's dumps and those appended so far, written by
       crawlmill as each one's last step), and returns the dumps not recorded yet, oldest first (from
       ``dumps.since``, at most ``dumps.max_new``). None: every later task is skipped and the run
       ends successfully, having done nothing.
    2. ``per_dump_ingest`` (mapped over the new dumps): the per-dump stages of crawlmill's pipeline
       list before its first joint one (ingest, filter), each ``crawlmill run CONFIG --append --dump ID --only STAGE`` as a Ray job.
       Ingest reads the dump's ``wet.paths.gz`` listing under ``ingest.base_url``.
    3. ``append``: ``crawlmill run CONFIG --append --from dedup --dump ID...``, one Ray job that takes
       the new dumps oldest first through dedup (incremental: against the dedup index of the joint
       run and every dump appended before, ``<output_dir>/dedup/_index``), quality, remix, the output folder's one
       tokenizer (trained with the first dump unless the config names one) and pack
       (``<output_dir>/shards/<dump>/``), then rewrites ``<output_dir>/shards/blend.json`` over the
       joint run's and all appended dumps' shards and records the dump in ``_dumps.json``. Earlier dumps are never redone.
    Everything resumes: a retried task or a rerun after a crash redoes only what is unfinished, and a
    dump recorded in ``_dumps.json`` is skipped.

Deploying
    As crawlmill_pipeline (same Ray cluster, params and address resolution; see its docstring). The
    Airflow worker reads the config (``output_dir``, ``dumps:``) and ``_dumps.json``, so both must be
    on storage it sees (a shared folder or an fsspec URL). Schedule: ``CRAWLMILL_NEW_DUMP_SCHEDULE``
    (a cron; default ``@weekly``) once ``CRAWLMILL_CONFIG`` names the config in the environment of the
    DAG processor and scheduler (scheduled runs carry no conf); without it the DAG runs only when
    triggered with ``--conf '{"config": ...}'``.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from airflow.sdk import DAG, chain, task, task_group
from crawlmill_config import dumps_section, output_dir_of, read_run_config
from crawlmill_ray import dag_settings, ray_job_task

from crawlmill.pipeline.dumps import APPEND_LAST, new_dumps
from crawlmill.pipeline.definition import PIPELINE

DAG_ID = "crawlmill_new_dump"
# Scheduled runs carry no conf: the schedule is on when CRAWLMILL_CONFIG names the config.
SCHEDULE = os.environ.get("CRAWLMILL_NEW_DUMP_SCHEDULE", "@weekly") if os.environ.get("CRAWLMILL_CONFIG") else None
PER_DUMP = PIPELINE.segments()[0][1]  # the per-dump stages before the first joint one (ingest, filter)
FIRST_AFTER = PIPELINE.names[PIPELINE.names.index(PER_DUMP[-1]) + 1]  # the first stage over all dumps (dedup)
if PIPELINE.names.index(FIRST_AFTER) > PIPELINE.names.index(APPEND_LAST):
    raise ValueError(f"the pipeline list has no stage between its per-dump stages and {APPEND_LAST}")


def append_entrypoint(stage: str) -> str:
    """A per-dump stage's Ray job; progress lines in its log, as crawlmill_pipeline.py's stage_entrypoint."""
    return f"crawlmill run {{{{ params.config | shquote }}}} --append --only {stage}"


@task
def find_new_dumps(params: dict[str, Any] | None = None) -> list[str]:
    """The dumps of the crawl list not appended to the config's output folder yet, oldest first."""
    data, base = read_run_config(params["config"], params.get("working_dir"))
    found = new_dumps(dumps_section(data), output_dir_of(data, base))
    print(f"new dumps: {', '.join(found) or 'none'}")
    return found


@task_group(group_id=f"per_dump_{PER_DUMP[0]}")
def per_dump(dump: str) -> None:
    chain(*[ray_job_task(stage, append_entrypoint(stage), dump=dump) for stage in PER_DUMP])


def dump_flags(dumps: list[str]) -> str:
    return " ".join(f"--dump {shlex.quote(dump)}" for dump in dumps)


with DAG(
    dag_id=DAG_ID,
    description="crawlmill: append each new Common Crawl dump (per-dump stages, incremental dedup, shards, blend)",
    doc_md=__doc__,
    schedule=SCHEDULE,
    tags=["crawlmill", "ray", "pretraining-data", "common-crawl"],
    **dag_settings(dump_flags=dump_flags),
) as dag:
    new = find_new_dumps()
    append = ray_job_task(
        "append",
        f"crawlmill run {{{{ params.config | shquote }}}} --append --from {FIRST_AFTER} "
        "{{ ti.xcom_pull(task_ids='find_new_dumps') | dump_flags }}",
    )
    chain(per_dump.expand(dump=new), append)
