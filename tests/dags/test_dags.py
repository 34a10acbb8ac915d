"""The Airflow DAG crawlmill_pipeline (dags/), with real Airflow and a real Ray head (conftest.py)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from crawlmill.pipeline.definition import PIPELINE
from tests.conftest import REPO

from .conftest import dag_module, jobs_of_run, load_dags, no_ray_address_env, poll_quickly

pytestmark = pytest.mark.heavy(175)  # seconds on 2 cores: runs first (tests/conftest.py)

if importlib.util.find_spec("airflow") is None:
    pytest.skip(
        "apache-airflow is not installed (the `airflow` extra: pip install -c constraints.txt -e '.[airflow]')",
        allow_module_level=True,
    )

DAG_ID = "crawlmill_pipeline"
SAMPLE_WARCS = str(REPO / "samples/crawl-data/*/segments/*/warc/*.warc.gz")
SAMPLE_DUMPS = ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]
PER_DUMP = PIPELINE.per_dump
JOINT = [name for name in PIPELINE.names if name not in PER_DUMP]
# The optional stages (StageSpec.optional): the configs here have no section for them.
OPTIONAL = [spec.name for spec in PIPELINE.stages if spec.optional]


def stage_of(task_id: str) -> str:
    return task_id.rsplit(".", 1)[-1]  # "per_dump_quality.quality" -> "quality"


@pytest.fixture(scope="module")
def dag(airflow_home):
    bag = load_dags()
    return poll_quickly(bag.dags[DAG_ID])


def _config(path: Path, inputs: list[str], output_dir: Path, dumps: list[str] | None = None) -> None:
    config = {"output_dir": str(output_dir), "ingest": {"inputs": inputs}, "tokenizer": {"vocab_size": 500}}
    if dumps:
        config["dumps"] = {"ids": dumps}
    path.write_text(yaml.safe_dump(config))


def test_dag_loads_with_no_import_errors(dag):
    assert dag.dag_id == DAG_ID
    # The one pipeline list, in order: each run of per-dump stages a group mapped over the config's dumps.
    assert PER_DUMP == ["ingest", "filter", "quality"]
    tasks = ["dumps", "per_dump_ingest.ingest", "per_dump_ingest.filter", "dedup", "per_dump_quality.quality", "remix", "tokenizer", "pack", "train"]
    assert [task.task_id for task in dag.tasks] == tasks
    # In order; a mapped task also reads its dump from the `dumps` task.
    assert all(dag.task_dict[b].upstream_task_ids - {"dumps"} == {a} - {"dumps"} for a, b in zip(tasks, tasks[1:]))
    assert set(dag.params.keys()) == {"config", "ray_address", "working_dir"}
    assert dag.schedule is None and dag.catchup is False and "crawlmill" in dag.tags
    assert dag.max_active_runs == 1


def test_a_stage_added_to_the_pipeline_list_becomes_a_task(airflow_home, monkeypatch):
    """The DAG file unchanged: a copy of the pipeline list with a toy stage gives a DAG with its task,
    in its place, running `crawlmill run CONFIG --only toy` (tests/pipeline/test_definition.py runs it)."""
    from crawlmill.pipeline import definition
    from tests.pipeline.toy_stage import pipeline_with_toy

    monkeypatch.setattr(definition, "PIPELINE", pipeline_with_toy())
    bag = load_dags()
    toy_dag = bag.dags[DAG_ID]
    assert [task.task_id for task in toy_dag.tasks] == ["dumps", "per_dump_ingest.ingest", "per_dump_ingest.filter", "toy", "dedup", "per_dump_quality.quality", "remix", "tokenizer", "pack", "train"]
    assert toy_dag.task_dict["toy"].entrypoint == "crawlmill run {{ params.config | shquote }} --only toy"
    assert toy_dag.task_dict["toy"].upstream_task_ids == {"per_dump_ingest.filter"} and toy_dag.task_dict["dedup"].upstream_task_ids == {"toy"}


def test_pipeline_dag_runs_each_stage_as_a_ray_job_and_each_dump_of_the_per_dump_stages(dag, client, ray_head, tmp_path, capfd):
    # The config travels in the job's working_dir and is named relative to it.
    working_dir = tmp_path / "job"
    working_dir.mkdir()
    _config(working_dir / "pipeline.yaml", [SAMPLE_WARCS], tmp_path / "out", dumps=SAMPLE_DUMPS)
    # No ray_address param: the address comes from the Airflow Variable crawlmill_ray_address.
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps({"crawlmill_ray_address": ray_head}))
    started = time.monotonic()
    with no_ray_address_env():
        run = dag.test(
            run_conf={"config": "pipeline.yaml", "working_dir": str(working_dir)}, variable_file_path=str(variables)
        )
    print(f"DAG run took {time.monotonic() - started:.1f} s")
    output = capfd.readouterr()
    log = output.out + output.err
    assert run.state == "success"
    # The task logs show the stages' progress: crawlmill's plain progress lines (no terminal in a job's
    # log: one as a step starts, at most one per 10 s while it runs, one as it ends), copied from the jobs.
    for stage in ("ingest", "filter", "dedup", "pack"):
        assert re.search(rf"\[ray\] {stage}[^\n]*?: [\d,]+ of [\d,]+ [^\n]* to do", log), stage
        assert re.search(rf"\[ray\] {stage}[^\n]*?: [\d,]+/[\d,]+ ", log), stage
    assert all((tmp_path / "out" / stage / dump / "_SUCCESS").exists() for stage in ("ingest", "filter") for dump in SAMPLE_DUMPS)
    assert not (tmp_path / "out/quality").exists()  # no quality section: its mapped tasks were skipped
    assert all((tmp_path / "out" / stage / "_SUCCESS").exists() for stage in ("dedup", "remix"))
    dedup = json.loads((tmp_path / "out/dedup/_stats.json").read_text())  # one joint dedup over both dumps
    assert dedup["in"] == sum(json.loads((tmp_path / "out/filter" / d / "_stats.json").read_text())["kept"] for d in SAMPLE_DUMPS)
    assert dedup["dropped"]["exact_duplicate"] > 0
    assert json.loads((tmp_path / "out/tokenizer/crawlmill.json").read_text())["padded_vocab_size"] == 640
    assert json.loads((tmp_path / "out/shards/manifest.json").read_text())["tokens"] > 10_000
    stats = [json.loads((tmp_path / "out/ingest" / d / "_stats.json").read_text()) for d in SAMPLE_DUMPS]
    assert all(s["kept"] > 10 and s["quarantined"] == 0 for s in stats) and sum(s["kept"] for s in stats) > 40
    jobs = jobs_of_run(client, run.run_id)
    # One Ray job per stage, and per dump for the per-dump stages (`--dump ID`, map index in the id);
    # none for an optional stage the config leaves out (quality, train).
    assert {"quality", "train"} <= set(OPTIONAL)
    runs = [name for name in PIPELINE.names if name not in OPTIONAL]
    assert len(jobs) == sum(len(SAMPLE_DUMPS) if name in PER_DUMP else 1 for name in runs) and set(jobs.values()) == {"SUCCEEDED"}
    assert not [job for job in client.list_jobs() if (job.metadata or {}).get("airflow_run_id") == run.run_id
                and stage_of(job.metadata["airflow_task_id"]) in OPTIONAL]  # fmt: skip
    # Their tasks show as skipped (each dump's too), and every stage after them still ran.
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert {key: state for key, state in states.items() if stage_of(key[0]) in OPTIONAL} == {
        ("per_dump_quality.quality", 0): "skipped", ("per_dump_quality.quality", 1): "skipped", ("train", -1): "skipped"
    }  # fmt: skip
    assert {state for key, state in states.items() if stage_of(key[0]) not in OPTIONAL} == {"success"}
    assert all(sid.startswith("crawlmill-crawlmill_pipeline-") and sid.endswith("-try1") for sid in jobs)
    assert sum("-per_dump_ingest.ingest-m" in sid for sid in jobs) == len(SAMPLE_DUMPS)


def test_a_job_failed_on_bad_input_fails_the_task_with_the_jobs_error_and_no_retry(dag, client, ray_head, tmp_path, capfd):
    missing = str(tmp_path / "no-such-folder")
    _config(tmp_path / "pipeline.yaml", [missing], tmp_path / "out")
    with no_ray_address_env():
        run = dag.test(run_conf={"config": str(tmp_path / "pipeline.yaml"), "ray_address": ray_head})
    output = capfd.readouterr()
    log = output.out + output.err
    assert run.state == "failed"
    # The job's own error (crawlmill's message) is in the task's log and in the error the task raised.
    assert f"{missing}: no such file or folder" in log
    assert "RayJobBadInput" in log and "ended FAILED: Job entrypoint command failed with exit code 2" in log
    assert "bad input or config; no retry can fix it" in log
    # crawlmill's exit status 2 (bad input): one try although CRAWLMILL_DAG_RETRIES=1 here
    # (test_retries.py: exit status 1 is retried).
    jobs = jobs_of_run(client, run.run_id)
    assert list(jobs.values()) == ["FAILED"] and next(iter(jobs)).endswith("-try1")
    assert not (tmp_path / "out/ingest/_SUCCESS").exists()
    assert all("-per_dump_ingest.ingest-m0-" in sid for sid in jobs)  # no dumps: section: one ingest
    states = {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert states["per_dump_ingest.ingest"] == ("failed", 1)
    # Every later stage is stopped by the failure, not run nor skipped: the ones after an optional
    # stage too, whose trigger rule lets them run after a skipped upstream but not a failed one.
    later = [task_id for task_id in dag.task_ids if task_id not in ("dumps", "per_dump_ingest.ingest")]
    assert {task_id: states[task_id][0] for task_id in later} == dict.fromkeys(later, "upstream_failed")


@pytest.fixture(scope="module")
def pipeline_dag(airflow_home):
    """The DAGs' helper module (crawlmill_ray.py)."""
    return dag_module("crawlmill_ray")


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
    with pytest.raises(pipeline_dag.RayJobFailed, match=r"(?s)ended FAILED.*boom: disk full") as failed:
        pipeline_dag.follow_job(client, sid, lines.append, poll_interval=0.5)
    assert not isinstance(failed.value, pipeline_dag.RayJobBadInput)  # exit status 3: retried
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
    with pytest.raises(pipeline_dag.RayJobFailed, match="ended STOPPED") as stopped:
        pipeline_dag.follow_job(client, first, lines.append, poll_interval=0.5)
    assert not isinstance(stopped.value, pipeline_dag.RayJobBadInput)  # a killed job: retried
    # Once it has ended, the next try submits its own job.
    assert pipeline_dag.submit_or_attach(client, f"{base}-try2", "true", None, metadata, lines.append) == f"{base}-try2"
    assert pipeline_dag.follow_job(client, f"{base}-try2", lines.append, poll_interval=0.5).status == "SUCCEEDED"


NO_AGENT = "Request failed with status code 500: No available agent to submit job, please try again later.."


class RefusingClient:
    """The real client, whose first `refusals` submissions are refused with `message` (by default the
    job server's answer from before the head's dashboard agent registered, which a CI run met on a
    loaded 2-core machine)."""

    def __init__(self, client, refusals: int, message: str = NO_AGENT) -> None:
        self.client, self.refusals, self.message, self.submitted = client, refusals, message, 0

    def submit_job(self, **job):
        self.submitted += 1
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError(self.message)
        return self.client.submit_job(**job)

    def __getattr__(self, name: str):
        return getattr(self.client, name)


def test_a_submission_refused_before_the_heads_agent_registered_is_sent_again(pipeline_dag, client, monkeypatch):
    lines: list[str] = []
    waits: list[float] = []
    base = f"crawlmill-test-{os.getpid()}-{time.time_ns()}"
    ok = f"{sys.executable} -c \"print('after the agent came')\""
    with monkeypatch.context() as patch:
        patch.setattr(pipeline_dag.time, "sleep", waits.append)
        refusing = RefusingClient(client, refusals=2)
        assert pipeline_dag.submit_or_attach(refusing, f"{base}-late", ok, None, None, lines.append) == f"{base}-late"
        assert refusing.submitted == 3 and waits == [2, 4]
        assert sum("has no agent yet" in line for line in lines) == 2
        # The refusal created nothing, so the id is neither taken nor suffixed; a head whose agent
        # never comes fails the task with Ray's message after the last try.
        with pytest.raises(RuntimeError, match="No available agent to submit job"):
            pipeline_dag.submit_or_attach(RefusingClient(client, refusals=6), f"{base}-never", ok, None, None, lines.append)
        assert waits == [2, 4, 2, 4, 8, 16, 32]
        # Any other refusal is not retried.
        other = RefusingClient(client, refusals=1, message="Request failed with status code 500: Internal Server Error")
        with pytest.raises(RuntimeError, match="Internal Server Error"):
            pipeline_dag.submit_or_attach(other, f"{base}-bad", ok, None, None, lines.append)
        assert other.submitted == 1
        assert len(waits) == 7
    assert pipeline_dag.follow_job(client, f"{base}-late", lines.append, poll_interval=0.5).status == "SUCCEEDED"
    assert "[ray] after the agent came" in lines
    assert not [job for job in client.list_jobs() if job.submission_id.startswith((f"{base}-never", f"{base}-bad"))]


class CuttableProxy:
    """A TCP proxy on loopback to `port` whose open connections can all be cut at once: how a
    restarting job server (or a network blip) looks to a client."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            cut, self.open = self.open, []
        for s in cut:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_the_log_is_streamed_and_a_broken_stream_reopened_without_losing_or_repeating_a_line(pipeline_dag, ray_head):
    """The job's log comes through Ray's log stream (each line once, not the whole log every poll;
    the whole log is fetched once, at the end). Every connection to the job server is cut twice
    while the job prints: the stream is opened again, and the task's log still has each line
    exactly once, in order."""
    from ray.job_submission import JobSubmissionClient

    proxy = CuttableProxy(int(ray_head.rsplit(":", 1)[1]))
    try:
        with no_ray_address_env():
            client = JobSubmissionClient(f"http://127.0.0.1:{proxy.port}")
        script = "import time\nfor i in range(40):\n    print(f'line {i}', flush=True)\n    time.sleep(0.2)"
        sid = client.submit_job(entrypoint=f"{sys.executable} -c {shlex.quote(script)}")
        whole_log_fetches: list[str] = []
        fetch_whole_log = client.get_job_logs
        client.get_job_logs = lambda job: whole_log_fetches.append(job) or fetch_whole_log(job)
        lines: list[str] = []

        def cut_after(*marks: str) -> None:
            for mark in marks:
                deadline = time.monotonic() + 120
                while mark not in lines and time.monotonic() < deadline:
                    time.sleep(0.01)
                proxy.cut()

        cutter = threading.Thread(target=cut_after, args=("[ray] line 5", "[ray] line 20"), daemon=True)
        cutter.start()
        assert pipeline_dag.follow_job(client, sid, lines.append, poll_interval=0.5).status == "SUCCEEDED"
        cutter.join(timeout=5)
    finally:
        proxy.close()
    assert [line for line in lines if line.startswith("[ray] line ")] == [f"[ray] line {i}" for i in range(40)]
    assert sum("reconnecting" in line for line in lines) >= 2, lines
    assert whole_log_fetches == [sid]  # once, at the end: the lines came through the stream
