"""Fixtures of the DAG tests: real Airflow (SQLite metadata DB in a temp AIRFLOW_HOME) and a real Ray
head started for these tests only (its own ports and temp dir; stopped by killing only its own
processes, never with `ray stop`). The test process never calls ray.init: it only talks to the head
over HTTP (JobSubmissionClient), so the in-process Ray of the other tests is left alone."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

DAGS = REPO / "dags"
VENV_BIN = Path(sys.executable).parent
RAY_ENV_OVERRIDES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")  # Ray's client prefers these to its argument


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    """A fresh AIRFLOW_HOME (migrated SQLite DB), set before airflow is first imported here. Session scope:
    airflow reads AIRFLOW_HOME once per process, so a second setup (a pytest-xdist worker that runs this
    package's modules apart) could not point it anywhere new."""
    if "airflow" in sys.modules:
        pytest.fail("airflow was imported before this module set AIRFLOW_HOME; its settings would point elsewhere")
    home = tmp_path_factory.mktemp("airflow-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_HOME", str(home))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(DAGS))
        # One quick retry: the failing case then also shows that a retry submits a new Ray job.
        mp.setenv("CRAWLMILL_DAG_RETRIES", "1")
        mp.setenv("CRAWLMILL_DAG_RETRY_DELAY_S", "1")
        for var in ("CRAWLMILL_DAG_SCHEDULE", "CRAWLMILL_CONFIG", "CRAWLMILL_RAY_ADDRESS"):
            mp.delenv(var, raising=False)
        migrate = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), timeout=300
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        yield home


def free_ports(n: int) -> list[int]:
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def stop_head(temp_dir: str) -> None:
    """Kill the processes of our head only: those naming our temp dir, and everything they started."""
    import psutil

    ours: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if temp_dir in " ".join(proc.info["cmdline"] or []):
                ours[proc.pid] = proc
                for child in proc.children(recursive=True):
                    ours[child.pid] = child
    ours.pop(os.getpid(), None)
    # SIGKILL at once: the head holds nothing to save (its temp dir is removed next), and raylet and GCS
    # take >10 s to exit on SIGTERM (a grace period only added seconds to every teardown).
    for proc in ours.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(ours.values()), timeout=5)


@contextlib.contextmanager
def no_ray_address_env():
    with pytest.MonkeyPatch.context() as mp:
        for var in RAY_ENV_OVERRIDES:
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(scope="package")
def ray_head():
    """A Ray head for these tests: loopback, its own free ports, a short temp dir, started from the venv's
    `ray` with the venv first on PATH (so jobs' `crawlmill` and `python` are the venv's). Yields the job
    (dashboard) address."""
    temp_dir = tempfile.mkdtemp(prefix="cmaf-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, dashboard, client, agent_http, agent_grpc, metrics, runtime_env, node_manager, object_manager = free_ports(9)
    env = {k: v for k, v in os.environ.items() if k not in RAY_ENV_OVERRIDES}
    env.update(
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    command = [
        str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1",
        f"--port={gcs}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}", f"--temp-dir={temp_dir}", "--num-cpus=1",
        "--disable-usage-stats",
    ]  # fmt: skip
    try:
        for attempt in range(2):  # a loaded machine can miss Ray's own startup deadline ("timed out during startup"): once more
            started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            if started.returncode == 0 or "timed out during startup" not in started.stdout + started.stderr or attempt:
                break
            stop_head(temp_dir)
        assert started.returncode == 0, started.stdout + started.stderr
        address = f"http://127.0.0.1:{dashboard}"
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 60
        while True:  # the job API comes up a little after `ray start` returns
            try:
                with no_ray_address_env():
                    JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def client(ray_head):
    from ray.job_submission import JobSubmissionClient

    with no_ray_address_env():
        yield JobSubmissionClient(ray_head)


def jobs_of_run(client, run_id: str) -> dict[str, str]:
    return {
        job.submission_id: str(job.status.value)
        for job in client.list_jobs()
        if (job.metadata or {}).get("airflow_run_id") == run_id
    }




def poll_quickly(dag, seconds: float = 0.25):
    """The DAG with its Ray job tasks reading their job's status every `seconds` (RayJobOperator's
    poll_interval, 2 s by default): a task then ends as soon as its job has ended, instead of up to a
    poll later (a DAG run here follows a dozen short jobs one after the other). dag.test() runs these
    task objects (those of a mapped task group too)."""
    for task in dag.tasks:
        if hasattr(task, "poll_interval"):
            task.poll_interval = seconds
    return dag


def dag_module(name: str):
    """A module of dags/ (a DAG file or its helpers), imported as Airflow does (the folder on sys.path)."""
    import importlib

    sys.path.insert(0, str(DAGS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(DAGS))


def load_dags():
    """The DagBag of dags/ as Airflow 3's DAG processor and task runner load a bundle: the folder on
    sys.path, so DAG files import their helper module (crawlmill_ray.py)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)
    assert bag.import_errors == {}, bag.import_errors
    return bag
