"""The Airflow DAG in dags/, with real Airflow (SQLite metadata DB in a temp AIRFLOW_HOME) and a real
Ray head started for these tests only (its own ports and temp dir; stopped by killing only its own
processes, never with `ray stop`). The test process never calls ray.init: it only talks to the head
over HTTP (JobSubmissionClient), so the in-process Ray of the other tests is left alone."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from crawlmill.pipeline.definition import PIPELINE
from tests.conftest import REPO

if importlib.util.find_spec("airflow") is None:
    pytest.skip(
        "apache-airflow is not installed (the `airflow` extra: pip install -c constraints.txt -e '.[airflow]')",
        allow_module_level=True,
    )

DAGS = REPO / "dags"
DAG_ID = "crawlmill_pipeline"
VENV_BIN = Path(sys.executable).parent
SAMPLE_WARCS = str(REPO / "samples/crawl-data/*/segments/*/warc/*.warc.gz")
RAY_ENV_OVERRIDES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")  # Ray's client prefers these to its argument


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """A fresh AIRFLOW_HOME (migrated SQLite DB), set before airflow is first imported here."""
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


@pytest.fixture(scope="module")
def dag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}, bag.import_errors
    return bag.dags[DAG_ID]


def _free_ports(n: int) -> list[int]:
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _stop_head(temp_dir: str) -> None:
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
    for proc in ours.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(list(ours.values()), timeout=3)  # raylet and GCS take >10 s to exit on SIGTERM
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


@contextlib.contextmanager
def _no_ray_address_env():
    with pytest.MonkeyPatch.context() as mp:
        for var in RAY_ENV_OVERRIDES:
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head for these tests: loopback, its own free ports, a short temp dir, started from the venv's
    `ray` with the venv first on PATH (so jobs' `crawlmill` and `python` are the venv's). Yields the job
    (dashboard) address."""
    temp_dir = tempfile.mkdtemp(prefix="cmaf-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, dashboard, client, agent_http, agent_grpc, metrics, runtime_env, node_manager, object_manager = _free_ports(9)
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
        started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        address = f"http://127.0.0.1:{dashboard}"
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + 60
        while True:  # the job API comes up a little after `ray start` returns
            try:
                with _no_ray_address_env():
                    JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        _stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def client(ray_head):
    from ray.job_submission import JobSubmissionClient

    with _no_ray_address_env():
        yield JobSubmissionClient(ray_head)


def _jobs_of_run(client, run_id: str) -> dict[str, str]:
    return {
        job.submission_id: str(job.status.value)
        for job in client.list_jobs()
        if (job.metadata or {}).get("airflow_run_id") == run_id
    }


def _config(path: Path, inputs: list[str], output_dir: Path) -> None:
    path.write_text(yaml.safe_dump({"output_dir": str(output_dir), "ingest": {"inputs": inputs}, "tokenizer": {"vocab_size": 500}}))


def test_dag_loads_with_no_import_errors(dag):
    assert dag.dag_id == DAG_ID
    assert [task.task_id for task in dag.tasks] == PIPELINE.names  # the one pipeline list, in order
    assert all(dag.task_dict[b].upstream_task_ids == {a} for a, b in zip(PIPELINE.names, PIPELINE.names[1:]))
    assert set(dag.params.keys()) == {"config", "ray_address", "working_dir"}
    assert dag.schedule is None and dag.catchup is False and "crawlmill" in dag.tags
    assert dag.max_active_runs == 1


def test_a_stage_added_to_the_pipeline_list_becomes_a_task(airflow_home, monkeypatch):
    """The DAG file unchanged: a copy of the pipeline list with a toy stage gives a DAG with its task,
    in its place, running `crawlmill run CONFIG --only toy` (tests/pipeline/test_definition.py runs it)."""
    from airflow.dag_processing.dagbag import DagBag

    from crawlmill.pipeline import definition
    from tests.pipeline.toy_stage import pipeline_with_toy

    monkeypatch.setattr(definition, "PIPELINE", pipeline_with_toy())
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}, bag.import_errors
    toy_dag = bag.dags[DAG_ID]
    assert [task.task_id for task in toy_dag.tasks] == ["ingest", "filter", "toy", "dedup", "quality", "remix", "tokenizer", "pack", "train"]
    assert toy_dag.task_dict["toy"].entrypoint == "crawlmill run {{ params.config | shquote }} --only toy --no-progress"
    assert toy_dag.task_dict["toy"].upstream_task_ids == {"filter"} and toy_dag.task_dict["dedup"].upstream_task_ids == {"toy"}


def test_pipeline_dag_runs_each_stage_as_a_ray_job(dag, client, ray_head, tmp_path):
    # The config travels in the job's working_dir and is named relative to it.
    working_dir = tmp_path / "job"
    working_dir.mkdir()
    _config(working_dir / "pipeline.yaml", [SAMPLE_WARCS], tmp_path / "out")
    # No ray_address param: the address comes from the Airflow Variable crawlmill_ray_address.
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps({"crawlmill_ray_address": ray_head}))
    started = time.monotonic()
    with _no_ray_address_env():
        run = dag.test(
            run_conf={"config": "pipeline.yaml", "working_dir": str(working_dir)}, variable_file_path=str(variables)
        )
    print(f"DAG run took {time.monotonic() - started:.1f} s")
    assert run.state == "success"
    assert all((tmp_path / "out" / stage / "_SUCCESS").exists() for stage in ("ingest", "filter", "dedup", "remix"))
    assert json.loads((tmp_path / "out/tokenizer/crawlmill.json").read_text())["padded_vocab_size"] == 640
    assert json.loads((tmp_path / "out/shards/manifest.json").read_text())["tokens"] > 10_000
    stats = json.loads((tmp_path / "out/ingest/_stats.json").read_text())
    assert stats["kept"] > 40 and stats["quarantined"] == 0
    jobs = _jobs_of_run(client, run.run_id)
    assert len(jobs) == len(PIPELINE.names) and set(jobs.values()) == {"SUCCEEDED"}  # one Ray job per stage
    assert all(sid.startswith("crawlmill-crawlmill_pipeline-") and sid.endswith("-try1") for sid in jobs)


def test_failed_job_fails_the_task_with_the_jobs_error(dag, client, ray_head, tmp_path, capfd):
    missing = str(tmp_path / "no-such-folder")
    _config(tmp_path / "pipeline.yaml", [missing], tmp_path / "out")
    with _no_ray_address_env():
        run = dag.test(run_conf={"config": str(tmp_path / "pipeline.yaml"), "ray_address": ray_head})
    output = capfd.readouterr()
    log = output.out + output.err
    assert run.state == "failed"
    # The job's own error (crawlmill's message) is in the task's log and in the error the task raised.
    assert f"{missing}: no such file or folder" in log
    assert "RayJobFailed" in log and "ended FAILED: Job entrypoint command failed with exit code 2" in log
    # One retry (CRAWLMILL_DAG_RETRIES=1 here), each try its own Ray job.
    jobs = _jobs_of_run(client, run.run_id)
    assert sorted(sid.rsplit("-", 1)[1] for sid in jobs) == ["try1", "try2"]
    assert set(jobs.values()) == {"FAILED"}
    assert not (tmp_path / "out/ingest/_SUCCESS").exists()


@pytest.fixture(scope="module")
def pipeline_dag(airflow_home):
    """The DAG file as a module, for its helpers."""
    sys.path.insert(0, str(DAGS))
    try:
        import crawlmill_pipeline
    finally:
        sys.path.remove(str(DAGS))
    return crawlmill_pipeline


def test_ray_address_comes_from_the_param_else_the_environment_else_local(pipeline_dag, monkeypatch):
    # (The Airflow Variable, between the two, is what the successful DAG run above uses.)
    monkeypatch.delenv("CRAWLMILL_RAY_ADDRESS", raising=False)
    assert pipeline_dag.resolve_ray_address(None) == "http://127.0.0.1:8265"
    monkeypatch.setenv("CRAWLMILL_RAY_ADDRESS", "http://ray-head:8265")
    assert pipeline_dag.resolve_ray_address("") == "http://ray-head:8265"
    assert pipeline_dag.resolve_ray_address("http://other:8265") == "http://other:8265"


def test_submission_ids_are_deterministic_and_url_safe(pipeline_dag):
    sid = pipeline_dag.submission_id_for("crawlmill_pipeline", "manual__2024-06-01T03:00:00+00:00", "ingest", -1, 2)
    assert sid == pipeline_dag.submission_id_for("crawlmill_pipeline", "manual__2024-06-01T03:00:00+00:00", "ingest", -1, 2)
    assert sid.endswith("-try2") and all(c.isalnum() or c in "._-" for c in sid)
    assert sid != pipeline_dag.submission_id_for("crawlmill_pipeline", "manual__2024-06-01T03:00:00-00:00", "ingest", -1, 2)


def test_resubmitting_an_existing_submission_id_attaches_or_takes_a_fresh_suffix(pipeline_dag, client):
    lines: list[str] = []
    base = f"crawlmill-test-{os.getpid()}-{time.time_ns()}"
    ok = f"{sys.executable} -c \"print('stage output')\""

    sid = pipeline_dag.submit_or_attach(client, f"{base}-ok", ok, None, None, lines.append)
    assert sid == f"{base}-ok"
    pipeline_dag.follow_job(client, sid, lines.append, poll_interval=0.5)
    assert "[ray] stage output" in lines
    # The same id again (a cleared task, a worker that died mid-job): the finished job is reused.
    assert pipeline_dag.submit_or_attach(client, sid, ok, None, None, lines.append) == sid
    assert len([job for job in client.list_jobs() if job.submission_id.startswith(sid)]) == 1

    fail = "echo 'boom: disk full' >&2; exit 3"
    sid = pipeline_dag.submit_or_attach(client, f"{base}-bad", fail, None, None, lines.append)
    with pytest.raises(pipeline_dag.RayJobFailed, match=r"(?s)ended FAILED.*boom: disk full"):
        pipeline_dag.follow_job(client, sid, lines.append, poll_interval=0.5)
    # After a failure the same id is not reused: the job is submitted again under a fresh suffix.
    again = pipeline_dag.submit_or_attach(client, sid, ok, None, None, lines.append)
    assert again == f"{sid}-r1"
    assert pipeline_dag.follow_job(client, again, lines.append, poll_interval=0.5).status == "SUCCEEDED"


def test_a_new_try_follows_a_job_of_the_same_task_that_is_still_running(pipeline_dag, client):
    # An Airflow worker that died mid-job leaves the job running; the next try must not start a second one.
    lines: list[str] = []
    base = f"crawlmill-test-{os.getpid()}-{time.time_ns()}"
    metadata = {"airflow_dag_id": DAG_ID, "airflow_run_id": base, "airflow_task_id": "ingest", "airflow_map_index": "-1"}
    first = pipeline_dag.submit_or_attach(client, f"{base}-try1", "sleep 120", None, metadata, lines.append)
    try:
        assert pipeline_dag.submit_or_attach(client, f"{base}-try2", "true", None, metadata, lines.append) == first
    finally:
        client.stop_job(first)
    with pytest.raises(pipeline_dag.RayJobFailed, match="ended STOPPED"):
        pipeline_dag.follow_job(client, first, lines.append, poll_interval=0.5)
    # Once it has ended, the next try submits its own job.
    assert pipeline_dag.submit_or_attach(client, f"{base}-try2", "true", None, metadata, lines.append) == f"{base}-try2"
    assert pipeline_dag.follow_job(client, f"{base}-try2", lines.append, poll_interval=0.5).status == "SUCCEEDED"
