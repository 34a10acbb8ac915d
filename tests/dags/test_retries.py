"""Which failures of a Ray job Airflow retries (dags/crawlmill_follow.py): crawlmill's exit status 2
(bad input or config) fails the task at once, every other failure is retried. A DAG of two
RayJobOperator tasks whose jobs exit 1 and 2, run with real Airflow against a real Ray head
(conftest.py; CRAWLMILL_DAG_RETRIES=1 there)."""

from __future__ import annotations

import importlib.util
import re
import types
from datetime import datetime

import pytest

from .conftest import dag_module, jobs_of_run, no_ray_address_env

pytestmark = pytest.mark.heavy(40)  # seconds on 2 cores: runs first (tests/conftest.py)

if importlib.util.find_spec("airflow") is None:
    pytest.skip(
        "apache-airflow is not installed (the `airflow` extra: pip install -c constraints.txt -e '.[airflow]')",
        allow_module_level=True,
    )

BAD_CONFIG = "unknown key(s) base_ur (did you mean base_url?)"


@pytest.fixture(scope="module")
def ray_module(airflow_home):
    return dag_module("crawlmill_ray")


def run_test_dag(dag, capfd) -> tuple:
    """`dag.test()` of a DAG made in the test, and what it printed. dag.test() runs a DAG the metadata
    DB has (as the DAG processor writes a bundle's): written first as a bag of one."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(types.SimpleNamespace(dags={dag.dag_id: dag}, import_errors={}, bundle_path=None, dag_warnings=set()), "dags-folder", None)
    with no_ray_address_env():
        run = dag.test()
    log = capfd.readouterr()
    return run, log.out + log.err


def test_exit_status_2_fails_the_task_without_retries_and_exit_status_1_is_retried(ray_module, client, ray_head, capfd):
    from airflow.sdk import DAG

    with DAG("crawlmill_test_retries", schedule=None, start_date=datetime(2024, 1, 1), default_args=ray_module.DEFAULT_ARGS) as dag:
        for task_id, status, line in (("bad_input", 2, f"error: crawl_bad.yaml.ingest: {BAD_CONFIG}"), ("failed_tasks", 1, "ingest: 1 task(s) failed")):
            ray_module.RayJobOperator(task_id=task_id, entrypoint=f"echo {line!r} >&2; exit {status}", ray_address=ray_head, poll_interval=0.5)
    assert dag.default_args["retries"] == 1
    run, log = run_test_dag(dag, capfd)
    assert run.state == "failed"
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert states == {"bad_input": ("failed", 1), "failed_tasks": ("failed", 2)}
    assert set(jobs_of_run(client, run.run_id).values()) == {"FAILED"}
    tries = [(job.metadata["airflow_task_id"], job.submission_id.rsplit("-", 1)[1]) for job in client.list_jobs() if (job.metadata or {}).get("airflow_run_id") == run.run_id]
    assert sorted(tries) == [("bad_input", "try1"), ("failed_tasks", "try1"), ("failed_tasks", "try2")]
    # The error that failed the task names the exit status and carries the job's last lines.
    assert "RayJobBadInput" in log and "exit code 2 (exit status 2: bad input or config; no retry can fix it" in log
    assert "--- last 40 lines of the job's log ---" in log and f"error: crawl_bad.yaml.ingest: {BAD_CONFIG}" in log


def test_the_exit_status_is_rays_driver_exit_code_else_its_status_message(ray_module):
    follow = dag_module("crawlmill_follow")
    info = types.SimpleNamespace(status="FAILED", driver_exit_code=2, message="Job failed.")
    assert follow.exit_code(info) == 2
    info = types.SimpleNamespace(status="FAILED", message="Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\nx")
    assert follow.exit_code(info) == 1  # a job server whose info lacks driver_exit_code
    assert follow.exit_code(types.SimpleNamespace(status="STOPPED", driver_exit_code=None, message="Job was intentionally stopped.")) is None
    assert issubclass(ray_module.RayJobBadInput, ray_module.RayJobFailed)
    from airflow.sdk.exceptions import AirflowFailException

    assert issubclass(ray_module.RayJobBadInput, AirflowFailException) and not issubclass(ray_module.RayJobFailed, AirflowFailException)


def test_a_job_server_requiring_a_token_the_worker_lacks_fails_the_task_at_once_saying_what_to_set(ray_module, tmp_path, capfd, monkeypatch):
    """A Ray head with token authentication (RAY_AUTH_MODE=token, as docs/ray.md sets it up) and an
    Airflow worker without the token: Ray's AuthenticationError, which no retry mends, fails the task
    on its first try with one line naming what to set, instead of two retries 300 s apart."""
    import secrets
    import shutil
    import tempfile
    from pathlib import Path

    from airflow.sdk import DAG

    from tests.rayhead import start_head, user_env

    token = secrets.token_hex(16)
    root = Path(tempfile.mkdtemp(prefix="cmauth-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    head = start_head(root, user_env(tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token), num_cpus=1, token=token)
    try:
        for var in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):  # the worker: no token, mode unset
            monkeypatch.delenv(var, raising=False)
        with DAG("crawlmill_test_auth", schedule=None, start_date=datetime(2024, 1, 1), default_args=ray_module.DEFAULT_ARGS) as dag:
            ray_module.RayJobOperator(task_id="needs_token", entrypoint="true", ray_address=head.dashboard, poll_interval=0.5)
        run, log = run_test_dag(dag, capfd)
    finally:
        head.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert run.state == "failed"
    # One try although CRAWLMILL_DAG_RETRIES=1 here.
    assert {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()} == {"needs_token": ("failed", 1)}
    # No token sent ("Missing"), or one of ~/.ray/auth_token, which Ray's client reads even without the mode set, of another cluster ("Invalid").
    expected = (rf"RayAuthFailed: the Ray job server at {re.escape(head.dashboard)} refused this Airflow worker "
                r"\(Authentication (required: Unauthorized: Missing|failed: Forbidden: Invalid) authentication token\): set RAY_AUTH_MODE=token and the cluster's token")  # fmt: skip
    assert re.search(expected, log), log[-3000:]
    assert "ray.exceptions.AuthenticationError" not in log  # Ray's pages of generic advice are not chained on


def test_a_refused_token_is_not_waited_for_as_an_outage(ray_module):
    from ray.exceptions import AuthenticationError

    follow = dag_module("crawlmill_follow")
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise AuthenticationError("Authentication failed: Forbidden: Invalid authentication token\n\nlong advice")

    with pytest.raises(AuthenticationError):
        follow._patiently(refused, lambda line: None)
    assert calls == [1]
    error = follow.auth_failure("http://ray-head:8265", AuthenticationError("Authentication failed: Forbidden: Invalid authentication token\n\nadvice"))
    assert isinstance(error, ray_module.RayAuthFailed) and "\n" not in str(error)
    assert "(Authentication failed: Forbidden: Invalid authentication token): set RAY_AUTH_MODE=token" in str(error)
