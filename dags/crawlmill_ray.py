"""Ray jobs for crawlmill's Airflow DAGs: the operator that runs one entrypoint as a Ray job and
follows it, and the DAGs' shared params. Not a DAG itself; the DAGs
in this folder (crawlmill_pipeline.py, crawlmill_new_dump.py) import it, as Airflow puts this folder
on sys.path.

RayJobOperator submits with Ray's own ``JobSubmissionClient`` (``submit_job(entrypoint=...,
submission_id=..., runtime_env=...)``), copies the job's log into the Airflow task log while it
runs (Ray's log stream, each line once: crawlmill_follow.py's follow_job), and succeeds when the
job SUCCEEDED. A job that ends FAILED or STOPPED fails the task, with the job's status message and
its last log lines in the error; one whose entrypoint exited with status 2 (crawlmill's bad input
or config, which no retry can fix) fails it at once, without retries (AirflowFailException), any
other failure is retried. A job server that refuses the worker's requests (Ray's token
authentication, with RAY_AUTH_MODE=token or the cluster's token missing or wrong in the Airflow
worker's environment) fails the task at once too (RayAuthFailed, one line naming what to set).
Killing the task (UI "mark failed", timeout) stops the job.

Submission ids are deterministic: ``crawlmill-<dag>-<run id>-<task>[-m<map index>]-<hash>-try<N>``,
and each job carries the DAG run and task in its metadata. A retry (try N+1) submits a new job;
crawlmill stages resume, so it only does the parts the failed try left unfinished. If a job of the
same run and task is still running (the Airflow worker died mid-job), the new try follows it
instead. If the submission id already exists on the cluster (e.g. a cleared task), the task
attaches to that job when it is running or has SUCCEEDED, and submits under a fresh ``-rN`` suffix
when it FAILED or STOPPED. Brief outages of the job server are retried (status reads, a
submission refused because the head's agent has not registered yet) or bridged (the log stream
is reopened).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator, Param, Variable
from airflow.sdk.exceptions import AirflowException
from crawlmill_follow import (  # noqa: F401 - the errors: re-exported
    TERMINAL,
    RayAuthFailed,
    RayJobBadInput,
    RayJobFailed,
    _status,
    auth_failure,
    follow_job,
)

RAY_ADDRESS_VARIABLE = "crawlmill_ray_address"
RAY_ADDRESS_ENV = "CRAWLMILL_RAY_ADDRESS"
DEFAULT_RAY_ADDRESS = "http://127.0.0.1:8265"

# What every crawlmill DAG shares: its params (dag_run.conf), retries and Jinja filters.
PARAMS = {
    "config": Param(
        os.environ.get("CRAWLMILL_CONFIG") or None,
        type="string",
        minLength=1,
        description="crawlmill pipeline config YAML (as for `crawlmill run CONFIG.yaml`), as the Ray cluster sees it: a path or an fsspec URL",
    ),
    "ray_address": Param(
        None,
        type=["null", "string"],
        description=f"Ray dashboard/job address; default: Variable {RAY_ADDRESS_VARIABLE}, "
        f"env {RAY_ADDRESS_ENV}, else {DEFAULT_RAY_ADDRESS}",
    ),
    "working_dir": Param(
        None,
        type=["null", "string"],
        description="optional runtime_env working_dir for the jobs (local folder or remote zip URI)",
    ),
}
DEFAULT_ARGS = {
    "owner": "crawlmill",
    "retries": int(os.environ.get("CRAWLMILL_DAG_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("CRAWLMILL_DAG_RETRY_DELAY_S", "300"))),
}
FILTERS = {"shquote": lambda value: shlex.quote(str(value))}


def dag_settings(**filters: Callable[..., str]) -> dict[str, Any]:
    """What every crawlmill DAG is built with besides its id, text, schedule and tags: one run at a
    time (two runs of one config would write the same output folders), no catchup, the shared params,
    retries and Jinja filters (plus `filters`)."""
    return {"start_date": datetime(2024, 1, 1), "catchup": False, "max_active_runs": 1, "default_args": DEFAULT_ARGS,
            "params": PARAMS, "user_defined_filters": {**FILTERS, **filters}}  # fmt: skip


def resolve_ray_address(param_value: str | None) -> str:
    """The run's ``ray_address`` param, else the Airflow Variable, else the environment, else local."""
    if param_value:
        return param_value
    try:
        from_variable = Variable.get(RAY_ADDRESS_VARIABLE, default=None)
    except Exception as exc:  # noqa: BLE001 - no metadata DB / API reachable: fall through to the env
        logging.getLogger(__name__).warning("could not read Variable %s (%s)", RAY_ADDRESS_VARIABLE, exc)
        from_variable = None
    return from_variable or os.environ.get(RAY_ADDRESS_ENV) or DEFAULT_RAY_ADDRESS


def submission_id_for(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """A deterministic Ray submission id for one try of one task of one DAG run.

    Ray puts the id in URL paths, so only [A-Za-z0-9._-] are kept; the hash keeps two run ids that
    differ only in dropped characters apart.
    """
    raw = f"{dag_id}|{run_id}|{task_id}|{map_index}"
    digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{dag_id}-{run_id}-{task_id}").strip("-")[:120]
    index = f"-m{map_index}" if map_index >= 0 else ""
    return f"crawlmill-{slug}{index}-{digest}-try{try_number}"


def _job_info_or_none(client: Any, submission_id: str) -> Any:
    try:
        return client.get_job_info(submission_id)
    except RuntimeError as exc:  # the SDK's "Request failed with status code 404: Job ... does not exist."
        if "status code 404" in str(exc):
            return None
        raise


def running_job_of(client: Any, metadata: dict[str, str]) -> str | None:
    """The submission id of a job of the same DAG run and task (any try) that has not ended, if any.

    An Airflow worker that died (no on_kill) leaves its job running; the next try follows that job
    instead of starting a second one on the same output.
    """
    for job in client.list_jobs():
        job_metadata = job.metadata or {}
        if all(job_metadata.get(k) == v for k, v in metadata.items()) and _status(job) not in TERMINAL:
            return job.submission_id
    return None


NO_AGENT_YET = "No available agent to submit job"  # Ray's HTTP 500, which ends "please try again later"


def submit_when_an_agent_answers(client: Any, log: Callable[[str], None], attempts: int = 6, **job: Any) -> None:
    """``client.submit_job(**job)``, sent again after 2, 4, 8, 16 and 32 s while the job server has no
    agent yet: just after a head starts it answers before the head's agent has registered, waits 10 s
    for one, then refuses ("No available agent to submit job, please try again later") having created
    nothing (met on a loaded 2-core machine; failing would cost the task an Airflow retry delay)."""
    for attempt in range(1, attempts + 1):
        try:
            client.submit_job(**job)
            return
        except RuntimeError as exc:
            if NO_AGENT_YET not in str(exc) or attempt == attempts:
                raise
            log(f"Ray job server has no agent yet ({exc}); submitting again in {2**attempt} s")
            time.sleep(2**attempt)


def submit_or_attach(
    client: Any,
    submission_id: str,
    entrypoint: str,
    runtime_env: dict[str, Any] | None,
    metadata: dict[str, str] | None,
    log: Callable[[str], None],
    max_suffix: int = 100,
) -> str:
    """Submit the job under `submission_id`, or reuse what a previous submission left.

    A job with the same `metadata` (same DAG run and task, an earlier try) that is still running
    is followed instead. A job already under `submission_id` that is running or SUCCEEDED is
    attached to (nothing is resubmitted); one that FAILED or was STOPPED is left as it is and the
    job is submitted under the next free ``<id>-rN``. Returns the submission id to follow.
    """
    if metadata:
        running = running_job_of(client, metadata)
        if running is not None:
            log(f"Ray job {running} of this task is still running; following it instead of submitting again")
            return running
    candidates = [submission_id] + [f"{submission_id}-r{n}" for n in range(1, max_suffix + 1)]
    for candidate in candidates:
        info = _job_info_or_none(client, candidate)
        if info is None:
            try:
                submit_when_an_agent_answers(
                    client, log, entrypoint=entrypoint, submission_id=candidate, runtime_env=runtime_env, metadata=metadata
                )
            except RuntimeError as exc:
                if "already exists" not in str(exc):
                    raise
                info = _job_info_or_none(client, candidate)  # lost a race with another submitter
                if info is None:
                    raise
            else:
                log(f"submitted Ray job {candidate}: {entrypoint}")
                return candidate
        status = _status(info)
        if status not in {"FAILED", "STOPPED"}:
            log(f"Ray job {candidate} already exists ({status}); following it instead of submitting again")
            return candidate
        log(f"Ray job {candidate} already exists and ended {status}; submitting under a new id")
    raise AirflowException(f"{max_suffix} earlier submissions of {submission_id} all failed; giving up")


class RayJobOperator(BaseOperator):
    """Run one shell entrypoint as a Ray job and wait for it (see the module docstring)."""

    template_fields = ("entrypoint", "ray_address", "working_dir", "dump")
    ui_color = "#cfe8fc"

    def __init__(
        self,
        *,
        entrypoint: str,
        ray_address: str = "",
        working_dir: str = "",
        dump: str = "",
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.entrypoint = entrypoint
        self.dump = dump  # a mapped task's dump: `--dump DUMP` goes after the entrypoint
        self.ray_address = ray_address
        self.working_dir = working_dir
        self.poll_interval = poll_interval
        self._client: Any = None
        self._submission_id: str | None = None

    def execute(self, context: Any) -> str:
        from ray.exceptions import AuthenticationError  # imported here: DAG parsing stays fast
        from ray.job_submission import JobSubmissionClient

        address = resolve_ray_address(self.ray_address)
        for var in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
            if os.environ.get(var) and os.environ[var] != address:
                self.log.warning("%s=%s is set here and overrides the Ray address %s", var, os.environ[var], address)
        self.log.info("Ray address: %s", address)
        try:
            return self._run(JobSubmissionClient, address, context)
        except AuthenticationError as exc:  # no retry can mend the worker's settings; Ray's own text is pages long
            raise auth_failure(address, exc) from None

    def _run(self, client_class: Any, address: str, context: Any) -> str:
        self._client = client_class(address)  # its version check is the first request: refused here
        ti = context["ti"]
        run_id = context["run_id"]
        base_id = submission_id_for(ti.dag_id, run_id, ti.task_id, ti.map_index, ti.try_number)
        runtime_env = {"working_dir": self.working_dir} if self.working_dir else None
        metadata = {
            "airflow_dag_id": ti.dag_id,
            "airflow_run_id": run_id,
            "airflow_task_id": ti.task_id,
            "airflow_map_index": str(ti.map_index),
        }
        entrypoint = f"{self.entrypoint} --dump {shlex.quote(self.dump)}" if self.dump else self.entrypoint
        self._submission_id = submit_or_attach(self._client, base_id, entrypoint, runtime_env, metadata, self.log.info)
        follow_job(self._client, self._submission_id, self.log.info, self.poll_interval)
        return self._submission_id

    def on_kill(self) -> None:
        if self._client is not None and self._submission_id is not None:
            self.log.info("stopping Ray job %s", self._submission_id)
            try:
                self._client.stop_job(self._submission_id)
            except Exception:  # noqa: BLE001 - best effort: the task is being killed anyway
                self.log.exception("could not stop Ray job %s", self._submission_id)


def ray_job_task(task_id: str, entrypoint: str, operator: type[RayJobOperator] = RayJobOperator, **kwargs: Any) -> RayJobOperator:
    """A task running `entrypoint` as a Ray job with the DAG run's params (ray_address, working_dir);
    `operator`: a subclass of RayJobOperator (crawlmill_pipeline.py's, for an optional stage)."""
    return operator(
        task_id=task_id,
        entrypoint=entrypoint,
        ray_address="{{ params.ray_address or '' }}",
        working_dir="{{ params.working_dir or '' }}",
        doc_md=f"crawlmill as a Ray job: `{entrypoint}`",
        **kwargs,
    )
