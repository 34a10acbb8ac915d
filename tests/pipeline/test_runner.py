"""The runner (pipeline/runner.py) on a real local Ray: resume, failure isolation, input checks,
determinism, for part stages and multi-step stages."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crawlmill.pipeline.parts import PartSink
from crawlmill.pipeline.runner import Task, run_stage
from crawlmill.pipeline.task_record import check_task_record
from crawlmill.pipeline.schema import document_id
from crawlmill.pipeline.stage import PartStage, PartTask, Stage, StageInputError, StageInputMismatch
from tests.conftest import REPO


class LinesStage(PartStage):
    """Each source is a text file; each line a document; lines starting with '#' are dropped."""

    name = "lines"

    def __init__(self, files: list[str]) -> None:
        super().__init__(files)
        self.files = files

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, s) for i, s in enumerate(self.files)]

    def process(self, task: PartTask, sink: PartSink) -> None:
        for n, line in enumerate(Path(task.source).read_text().splitlines()):
            if line.startswith("#"):
                sink.drop("comment")
            elif line == "BOOM":
                raise ValueError(f"bad line {n}")
            else:
                sink.keep({"id": document_id(f"{task.source}:{n}"), "text": line})


@pytest.fixture
def sources(tmp_path):
    paths = []
    for i in range(5):
        p = tmp_path / f"in{i}.txt"
        p.write_text("\n".join([f"doc {i}.{j}" for j in range(20)] + ["# comment"]))
        paths.append(str(p))
    return paths


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_writes_parts_stats_and_success(ray_local, sources, tmp_path):
    out = tmp_path / "out"
    result = run_stage(LinesStage(sources), out, progress=False)
    assert result.ok
    stats = json.loads((out / "_stats.json").read_text())
    assert stats == {"stage": "lines", "parts": 5, "in": 105, "kept": 100, "dropped": {"comment": 5}, "quarantined": 0, "counters": {}}
    assert (out / "_SUCCESS").exists()
    assert sorted(p.name for p in out.glob("part-*.parquet")) == [f"part-0000{i}.parquet" for i in range(5)]
    marker = json.loads((out / "_parts/part-00003.json").read_text())  # the runner writes each part's counts
    assert marker == {"index": 3, "source": sources[3], "in": 21, "kept": 20, "dropped": {"comment": 1}, "quarantined": 0, "counters": {},
                      "files": {"part-00003.parquet": (out / "part-00003.parquet").stat().st_size}}  # the size a reader checks


class SlowRayStartStage(LinesStage):
    """As if starting Ray took 2 s inside the stage (the first stage of a run starts it)."""

    def run(self, ctx):  # noqa: ANN001
        from crawlmill.pipeline import ray_tasks

        time.sleep(2.0)
        ray_tasks.RAY_START_SECONDS[0] += 2.0
        return super().run(ctx)


def test_the_time_a_stage_spent_starting_ray_is_not_counted_as_the_stages(ray_local, sources, tmp_path, monkeypatch):
    from crawlmill.pipeline import ray_tasks, runner

    started_before = [5.0]  # a Ray started by an earlier run in this process
    monkeypatch.setattr(ray_tasks, "RAY_START_SECONDS", started_before)
    monkeypatch.setattr(runner, "RAY_START_SECONDS", started_before)
    started = time.perf_counter()
    result = run_stage(SlowRayStartStage(sources), tmp_path / "out", progress=False)
    elapsed = time.perf_counter() - started
    assert result.ok and 0 < result.seconds < elapsed - 1.9  # without the subtraction: elapsed


def test_parts_written_where_the_driver_does_not_see_them_are_refused_not_marked_finished(ray_local, sources, tmp_path, monkeypatch):
    """A node-local output folder on a cluster: tasks on the other node finished, and their parts
    and markers are on its disk. Seen from the driver (here: a listing that lacks part 3's
    marker), the stage must not be marked finished, or every later stage reads 4 parts of 5."""
    from crawlmill.pipeline import markers

    listed = markers.list_files
    monkeypatch.setattr(markers, "NFS_LISTING_WAITS", (0.1, 0.1))
    monkeypatch.setattr(markers, "list_files", lambda folder, pattern="*": [p for p in listed(folder, pattern) if p.name != "part-00003.json"])
    out = tmp_path / "out"
    with pytest.raises(markers.OutputNotShared, match=r"1 of 5 finished task\(s\) wrote files this machine does not see .*in3.txt.*every node must see the output folder"):
        run_stage(LinesStage(sources), out, progress=False)
    assert not (out / "_SUCCESS").exists() and not (out / "_stats.json").exists()
    monkeypatch.setattr(markers, "list_files", listed)  # the folder shared after all: the rerun finishes it
    assert run_stage(LinesStage(sources), out, progress=False).ok and (out / "_SUCCESS").exists()


def test_failed_part_is_reported_others_finish_and_rerun_retries_only_it(ray_local, sources, tmp_path):
    Path(sources[2]).write_text("doc a\nBOOM\n")
    out = tmp_path / "out"
    result = run_stage(LinesStage(sources), out, progress=False)
    assert not result.ok
    assert result.failures[0][0] == sources[2] and "bad line 1" in result.failures[0][1]
    assert not (out / "_SUCCESS").exists()
    assert len(list((out / "_parts").glob("*.json"))) == 4
    assert not list(out.rglob("*.tmp-*")) and not (out / "part-00002.parquet").exists()

    Path(sources[2]).write_text("doc a\ndoc b\n")
    before = {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    result = run_stage(LinesStage(sources), out, progress=False)
    assert result.ok and result.finished_before == 4
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished parts untouched
    assert json.loads((out / "_stats.json").read_text())["kept"] == 82


def test_same_input_gives_byte_identical_output(ray_local, sources, tmp_path):
    run_stage(LinesStage(sources), tmp_path / "a", progress=False)
    run_stage(LinesStage(list(sources)), tmp_path / "b", progress=False)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")


def test_output_of_other_inputs_is_refused(ray_local, sources, tmp_path):
    out = tmp_path / "out"
    run_stage(LinesStage(sources), out, progress=False)
    with pytest.raises(StageInputMismatch, match=r"an earlier lines run with other inputs \(5 then, 3 now; 2 differ\)"):
        run_stage(LinesStage(sources[:3]), out, progress=False)
    check_task_record(tmp_path, {"stage": "lines", "settings": {"lines": 2}, "sources": sources[:3]})
    with pytest.raises(StageInputMismatch, match=r"with other settings \(lines: 2 -> 3\), other inputs"):  # what differs, by name
        check_task_record(tmp_path, {"stage": "lines", "settings": {"lines": 3}, "sources": sources})


def test_stale_temporaries_of_a_killed_run_are_removed(ray_local, sources, tmp_path):
    out = tmp_path / "out"
    run_stage(LinesStage(sources), out, progress=False)
    for killed in ("_parts/part-00001.json", "_stats.json", "_SUCCESS"):  # as a run killed writing part 1 leaves it
        (out / killed).unlink()
    (out / ".tmp-deadbeef-part-00001.parquet").write_bytes(b"half a file")
    assert run_stage(LinesStage(sources), out, progress=False).finished_before == 4
    assert not list(out.rglob(".tmp-*"))


def test_only_the_framework_imports_ray():
    """`grep -rn "import ray" pipeline tokenizer crawlmill shards` finds the framework's module only:
    every stage runs its Ray tasks through the runner."""

    hits = {
        str(path.relative_to(REPO))
        for top in ("pipeline", "tokenizer", "crawlmill", "shards")
        for path in (REPO / top).rglob("*.py")
        if "import ray" in path.read_text() or "ray.remote" in path.read_text()
    }
    assert hits == {"pipeline/ray_tasks.py"}


class TwoStepStage(Stage):
    """A multi-step stage: step 1 squares numbers (one task each), step 2 sums them; the input
    `fail_at` makes one task of step 1 fail, `bad_input` makes it raise StageInputError."""

    name = "two_steps"

    def __init__(self, numbers: list[int], fail_at: int | None = None, bad_input: bool = False) -> None:
        super().__init__({"numbers": numbers})
        self.numbers, self.fail_at, self.bad_input = numbers, fail_at, bad_input

    def sources(self) -> list[str]:
        return [str(n) for n in self.numbers]

    def run(self, ctx):  # noqa: ANN001, ANN201
        squares = ctx.step("square", square, [Task(f"n-{n}", (n, self.fail_at, self.bad_input)) for n in self.numbers])
        total = ctx.step("sum", add_up, [Task("sum", ([squares[f"n-{n}"]["square"] for n in self.numbers],))])
        return {"stage": self.name, "parts": len(self.numbers), "in": len(self.numbers), "kept": 1, "dropped": {}, "quarantined": 0, "counters": total["sum"]}


def square(n: int, fail_at: int | None, bad_input: bool) -> dict:
    if n == fail_at:
        if bad_input:
            raise StageInputError(f"{n} cannot be squared here")
        raise RuntimeError(f"task {n} crashed")
    return {"square": n * n}


def add_up(values: list[int]) -> dict:
    return {"total": sum(values)}


def test_multi_step_stage_resumes_task_by_task(ray_local, tmp_path):
    out = tmp_path / "out"
    failed = run_stage(TwoStepStage([1, 2, 3, 4], fail_at=3), out, progress=False)
    assert not failed.ok and failed.failures[0][0] == "n-3" and "task 3 crashed" in failed.failures[0][1]
    done = sorted(p.name for p in (out / "_work/_done/square").glob("*.json"))
    assert done == ["n-1.json", "n-2.json", "n-4.json"] and not (out / "_SUCCESS").exists()
    (out / "_work/_done/square/n-1.json").write_text('{"square": 100}')  # proof that n-1 is not run again
    resumed = run_stage(TwoStepStage([1, 2, 3, 4]), out, progress=False)
    assert resumed.ok and resumed.steps_finished_before == {"square": 3, "sum": 0}
    assert json.loads((out / "_stats.json").read_text())["counters"] == {"total": 100 + 4 + 9 + 16}
    assert run_stage(TwoStepStage([1, 2, 3, 4]), out, progress=False).already_done


class PidStage(Stage):
    """Two steps that report their worker processes: one in reused workers, one in fresh ones."""

    name = "pids"

    def __init__(self) -> None:
        super().__init__({})

    def sources(self) -> list[str]:
        return []

    def run(self, ctx):  # noqa: ANN001, ANN201
        tasks = [Task(f"t-{n}", (n,)) for n in range(4)]
        reused = ctx.step("reused", worker_pid, tasks)
        fresh = ctx.step("fresh", worker_pid, tasks, fresh_worker=True)
        pids = {"reused": sorted({r["pid"] for r in reused.values()}), "fresh": [fresh[t.key]["pid"] for t in tasks]}
        return {"stage": self.name, "parts": 0, "in": 0, "kept": 0, "dropped": {}, "quarantined": 0, "counters": {}, "pids": pids}


def worker_pid(n: int) -> dict:
    time.sleep(0.2)  # several workers for the reused step
    return {"pid": os.getpid(), "fresh": os.environ.get("CRAWLMILL_FRESH_WORKER")}


def test_a_fresh_worker_step_runs_each_task_in_a_process_no_other_task_used(ray_local, tmp_path):
    """The tokenizer's trainer measures and budgets its memory: in a reused worker it carried what
    earlier tasks left (CI: 506 MiB against a 461 MiB budget)."""
    pids = run_stage(PidStage(), tmp_path / "out", progress=False).stats["pids"]
    assert len(set(pids["fresh"])) == 4 and not set(pids["fresh"]) & set(pids["reused"])
    assert not set(run_stage(PidStage(), tmp_path / "again", progress=False).stats["pids"]["fresh"]) & set(pids["fresh"])


def test_unusable_input_in_a_task_stops_the_stage_with_its_error_and_leaves_no_folder(ray_local, tmp_path):
    with pytest.raises(StageInputError, match="3 cannot be squared here"):
        run_stage(TwoStepStage([1, 2, 3], fail_at=3, bad_input=True), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def load_once(log: str) -> dict:
    """A node step's setup: notes which process loaded, returns the "model"."""
    with open(log, "a") as handle:
        handle.write(f"setup {os.getpid()}\n")
    return {"weights": list(range(100_000)), "loader": os.getpid()}


def meet_the_other_item(n: int, log: str, timeout: float = 60) -> None:
    """Items 0 and 1 wait for each other: both finish at once only when two processes run them side
    by side (with one process, item 0 waits out the timeout alone). A fast item does not show
    parallelism by itself: one process can take every item before the second one starts."""
    open(f"{log}.at-{n}", "w").close()
    deadline = time.monotonic() + timeout
    while not os.path.exists(f"{log}.at-{1 - n}") and time.monotonic() < deadline:
        time.sleep(0.01)


def use_model(model: dict, n: int, log: str) -> dict:
    with open(log, "a") as handle:
        handle.write(f"item {n} {os.getpid()} {os.getppid()}\n")
    if n in (0, 1):
        meet_the_other_item(n, log)
    if n == 13:
        raise RuntimeError("item 13 crashed")
    if n == 66 and not os.path.exists(log + ".spare-66"):  # killed once, as by the OOM killer
        open(log + ".spare-66", "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return {"n": n, "sum": sum(model["weights"][:n]), "loader": model["loader"], "pid": os.getpid()}


class NodeStepStage(Stage):
    name = "node_steps"

    def __init__(self, items: list[int], log: str) -> None:
        super().__init__({"items": items})
        self.items, self.log = items, log

    def run(self, ctx):  # noqa: ANN001, ANN201
        results = ctx.node_step("use", load_once, use_model, [Task(f"item-{n}", (n, self.log)) for n in self.items], shared=(self.log,))
        return {"stage": self.name, "parts": len(results), "in": len(results), "kept": len(results), "dropped": {}, "quarantined": 0,
                "counters": {"total": sum(r["sum"] for r in results.values()), "processes": len({r["pid"] for r in results.values()})}}  # fmt: skip


def test_node_step_loads_once_per_node_and_forks_the_workers(ray_local, tmp_path):
    """The model of a node step is loaded once on the node; its items run in processes forked from that
    loader (they share its pages), in parallel; a failed item is reported and retried alone."""
    log = tmp_path / "log.txt"
    result = run_stage(NodeStepStage(list(range(12)), str(log)), tmp_path / "out", progress=False)
    assert result.ok, result.failures
    lines = log.read_text().splitlines()
    setups = [line.split()[1] for line in lines if line.startswith("setup")]
    items = [line.split() for line in lines if line.startswith("item")]
    assert len(setups) == 1  # one node here: one load
    assert {parent for *_, parent in items} == {setups[0]} and len({pid for _, _, pid, _ in items}) == 2  # 2 CPUs: 2 forks
    assert json.loads((tmp_path / "out/_stats.json").read_text())["counters"]["total"] == sum(n * (n - 1) // 2 for n in range(12))

    failing = run_stage(NodeStepStage(list(range(10, 16)), str(log)), tmp_path / "out2", progress=False)
    assert not failing.ok and failing.failures == [("item-13", "RuntimeError: item 13 crashed")]
    assert sorted(p.stem for p in (tmp_path / "out2/_work/_done/use").glob("*.json")) == ["item-10", "item-11", "item-12", "item-14", "item-15"]


def test_a_killed_forked_worker_fails_its_items_and_a_rerun_finishes(ray_local, tmp_path):
    """A process of a node step's pool that dies fails the node's unfinished items (no wait for the
    item it had); the rerun redoes only those."""
    log = tmp_path / "log.txt"
    items = [60, 61, 62, 63, 64, 65, 66, 67]
    first = run_stage(NodeStepStage(items, str(log)), tmp_path / "out", progress=False)
    assert not first.ok and any("BrokenProcessPool" in detail for _, detail in first.failures)
    assert "item-66" in {key for key, _ in first.failures}
    again = run_stage(NodeStepStage(items, str(log)), tmp_path / "out", progress=False)
    assert again.ok, again.failures
    assert json.loads((tmp_path / "out/_stats.json").read_text())["counters"]["total"] == sum(n * (n - 1) // 2 for n in items)


def test_a_node_task_that_ray_retries_skips_the_items_its_first_try_finished(tmp_path):
    """Ray retries a node step's task whose worker died (out of memory): the retry ran setup and
    every item of the node's share again, those whose markers the first try had written too."""
    from crawlmill.pipeline.runner import run_node

    log, markers = tmp_path / "log.txt", tmp_path / "markers"
    markers.mkdir()
    items = [(str(markers / f"item-{n}.json"), f"item-{n}", (n, str(log))) for n in (20, 21, 22)]
    (markers / "item-20.json").write_text(json.dumps({"n": 20, "sum": -1}))  # the first try's
    results = run_node(load_once, use_model, (str(log),), 1, items)
    assert [(key, (result or {}).get("sum")) for key, result, _, _ in results] == [("item-20", -1), ("item-21", 210), ("item-22", 231)]
    assert [line.split()[1] for line in log.read_text().splitlines() if line.startswith("item")] == ["21", "22"]
    log.unlink()
    again = run_node(load_once, use_model, (str(log),), 1, items)  # every item finished: not even setup runs
    assert [r[1]["sum"] for r in again] == [-1, 210, 231] and not log.exists()


def test_a_node_that_left_the_cluster_fails_its_items_and_the_rerun_finishes(ray_local, tmp_path, monkeypatch):
    """A node that died before or during a node step (Ray: TaskUnschedulableError for its task,
    pinned to it) ended the run with a traceback; its items now fail as a crashed worker's do, the
    other node's items finish, and the rerun (the node gone from the list) does the rest."""
    from crawlmill.pipeline import runner

    log = tmp_path / "log.txt"
    alive = runner.cpu_nodes
    monkeypatch.setattr(runner, "cpu_nodes", lambda options: [*alive(options), ("ab" * 28, 1)])  # listed, but gone
    first = run_stage(NodeStepStage([30, 31, 32, 33], str(log)), tmp_path / "out", progress=False)
    assert not first.ok and [key for key, _ in first.failures] == ["item-31", "item-33"], first.failures  # the second node's share
    assert all("TaskUnschedulableError" in detail for _, detail in first.failures)
    monkeypatch.setattr(runner, "cpu_nodes", alive)
    again = run_stage(NodeStepStage([30, 31, 32, 33], str(log)), tmp_path / "out", progress=False)
    assert again.ok and again.steps_finished_before == {"use": 2}


def test_overwrite_deletes_the_earlier_output_only_once_the_inputs_are_checked(ray_local, sources, tmp_path):
    """--overwrite (run_stage's `overwrite`) deletes nothing before the stage's inputs are resolved:
    a missing input fails with its own error and the earlier output is as it was."""
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage

    out = tmp_path / "out"
    assert run_stage(LinesStage(sources), out, progress=False).ok
    before = folder_bytes(out)
    with pytest.raises(ValueError, match="nope.warc.gz: no such file or folder"):  # ingest's InputError
        run_stage(IngestStage(IngestConfig(inputs=[str(tmp_path / "nope.warc.gz")])), out, progress=False, overwrite=True)
    assert folder_bytes(out) == before
    with pytest.raises(ValueError):  # a new folder is not even made
        run_stage(IngestStage(IngestConfig(inputs=[str(tmp_path / "nope.warc.gz")])), tmp_path / "new", progress=False, overwrite=True)
    assert not (tmp_path / "new").exists()
    # the same stage over its real earlier output: deleted and made again (not "already done")
    (out / "_work").mkdir()
    (out / "_work/leftover.json").write_text("{}")
    again = run_stage(LinesStage(sources), out, progress=False, overwrite=True)
    assert again.ok and not again.already_done and again.finished_before == 0
    assert folder_bytes(out) == before  # byte-identical, the leftover gone


def test_a_folder_crawlmill_did_not_write_is_neither_written_into_nor_deleted(ray_local, sources, tmp_path):
    from crawlmill.pipeline.output_folder import OutputFolderRefused

    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("years of work")
    (precious / "sub/data.csv").write_text("a,b\n")
    before = folder_bytes(precious)
    with pytest.raises(OutputFolderRefused, match=f"^{precious} is not empty and is not a crawlmill stage output folder "
                       r"\(none of _tasks.json, _SUCCESS, _stats.json, _parts/, _work/ in it\): --overwrite deletes only a folder crawlmill wrote"):  # fmt: skip
        run_stage(LinesStage(sources), precious, progress=False, overwrite=True)
    with pytest.raises(OutputFolderRefused, match="crawlmill writes only into a new or empty folder, or resumes its own output"):
        run_stage(LinesStage(sources), precious, progress=False)  # parts are not mixed into someone's folder either
    assert folder_bytes(precious) == before and sorted(p.name for p in precious.iterdir()) == ["sub", "thesis.txt"]
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(OutputFolderRefused, match="a-file is a file, not a folder"):
        run_stage(LinesStage(sources), tmp_path / "a-file", progress=False, overwrite=True)
    assert (tmp_path / "a-file").read_text() == "mine"
    (tmp_path / "empty").mkdir()  # an empty folder is fine, with or without --overwrite
    assert run_stage(LinesStage(sources), tmp_path / "empty", progress=False).ok
    (tmp_path / "empty2").mkdir()
    assert run_stage(LinesStage(sources), tmp_path / "empty2", progress=False, overwrite=True).ok


def test_overwrite_refuses_a_stage_folder_that_also_holds_someone_elses_files(ray_local, sources, tmp_path):
    from crawlmill.pipeline.output_folder import OutputFolderRefused

    out = tmp_path / "out"
    assert run_stage(LinesStage(sources), out, progress=False).ok
    for name in ("mydata.csv", "notes", "a.txt", "b.txt", "c.txt", "d.txt"):
        (out / name).write_text("mine")
    with pytest.raises(OutputFolderRefused, match=rf"^{out} holds files crawlmill never writes \(a.txt, b.txt, c.txt, d.txt, mydata.csv and 1 more\): "
                       "--overwrite would delete them with the earlier output"):  # fmt: skip
        run_stage(LinesStage(sources), out, progress=False, overwrite=True)
    assert (out / "mydata.csv").read_text() == "mine" and (out / "_SUCCESS").exists()
    assert run_stage(LinesStage(sources), out, progress=False).already_done  # a resume deletes nothing: it goes on
    for name in ("mydata.csv", "notes", "a.txt", "b.txt", "c.txt", "d.txt"):
        (out / name).unlink()
    (out / ".tmp-0123-part-00009.parquet").write_bytes(b"a killed writer's")  # crawlmill's own: no obstacle
    assert run_stage(LinesStage(sources), out, progress=False, overwrite=True).ok
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_parts", "_stats.json", "_tasks.json", *[f"part-0000{i}.parquet" for i in range(5)]]


def test_an_output_folder_that_is_holds_or_lies_inside_an_input_is_refused(ray_local, sources, tmp_path):
    """Compared as resolved paths (a symbolic link to the input is the input), with or without
    --overwrite, before anything is written or deleted."""
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.output_folder import OutputFolderRefused
    from tests.conftest import SAMPLES

    warcs = tmp_path / "warcs"
    warcs.mkdir()
    warc = sorted(SAMPLES.glob("crawl-data/*/segments/*/warc/*.warc.gz"))[0]
    (warcs / "a.warc.gz").write_bytes(warc.read_bytes())
    (tmp_path / "link").symlink_to(warcs)
    before = folder_bytes(tmp_path)
    for output, relation, source in [
        (warcs, "is", warcs),
        (tmp_path / "link", "is", warcs),
        (tmp_path, "holds", warcs),
    ]:
        for overwrite in (False, True):
            with pytest.raises(OutputFolderRefused, match=f"ingest: the output folder {output} {relation} its input {source}: a stage never writes where it reads"):
                run_stage(IngestStage(IngestConfig(inputs=[str(warcs)])), output, progress=False, overwrite=overwrite)
    with pytest.raises(OutputFolderRefused, match=f"lines: the output folder {tmp_path} holds its input {sources[0]}"):  # a file it reads
        run_stage(LinesStage(sources), tmp_path, progress=False, overwrite=True)
    assert folder_bytes(tmp_path) == before and not (warcs / "out").exists()
    # ingest inside its input folder (data/ and data/out/ingest): its folder search takes WARC/WET files
    # only, and deleting its output deletes no input (a stage reading folders recursively is refused: test_cli)
    for overwrite in (False, True):
        result = run_stage(IngestStage(IngestConfig(inputs=[str(warcs)])), tmp_path / "link/out", progress=False, overwrite=overwrite)
        assert result.ok and result.stats["in"] > 0 and (warcs / "a.warc.gz").read_bytes() == warc.read_bytes()


def test_inputs_are_compared_as_resolved_paths_and_normalized_urls(tmp_path, monkeypatch):
    from crawlmill.pipeline.output_folder import OutputFolderRefused, check_output_not_input

    monkeypatch.chdir(tmp_path)
    check_output_not_input("s3://bucket/out", ["s3://bucket/in", "s3://bucket/outer/x", "gs://bucket/out", str(tmp_path / "out")], "x")  # apart
    for output, given in [("s3://bucket/out/", "s3://bucket//out/./part-0.parquet"), ("S3://bucket/a/b", "s3://bucket/a/c/../b"),
                          ("s3://bucket/runs/x", "s3://bucket/runs"), ("out", str(tmp_path / "out/../out/part.parquet")),
                          ("./in/sub", "in"), ("tok", "en=tok/a.txt")]:  # fmt: skip
        with pytest.raises(OutputFolderRefused, match="a stage never writes where it reads"):
            check_output_not_input(output, [given], "x")


def test_output_folders_at_a_url_are_checked_as_local_ones():
    """On an object store: a prefix crawlmill did not write is refused, a stage's own is deleted
    by --overwrite unless it holds someone's file; an absent prefix is a new folder."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from crawlmill.pipeline.output_folder import OutputFolderRefused, check_output_folder, reset_output
    from tests.s3server import moto_s3

    with moto_s3("overwrite-test") as (fs, _):
        fs.pipe_file("overwrite-test/precious/thesis.txt", b"years of work")
        fs.pipe_file("overwrite-test/precious/sub/data.csv", b"a,b")
        for overwrite in (False, True):
            with pytest.raises(OutputFolderRefused, match="^s3://overwrite-test/precious is not empty and is not a crawlmill stage output folder"):
                check_output_folder("s3://overwrite-test/precious/", overwrite=overwrite)
        with pytest.raises(OutputFolderRefused, match="^s3://overwrite-test/precious is not empty"):
            reset_output("s3://overwrite-test/precious")
        with pytest.raises(OutputFolderRefused, match="thesis.txt is a file, not a folder"):
            reset_output("s3://overwrite-test/precious/thesis.txt")
        assert fs.cat_file("overwrite-test/precious/thesis.txt") == b"years of work" and fs.exists("overwrite-test/precious/sub/data.csv")
        check_output_folder("s3://overwrite-test/new", overwrite=True)  # nothing there: fine
        for name in ("_tasks.json", "_SUCCESS", "_parts/part-00000.json", "part-00000.parquet", "mydata.csv"):
            fs.pipe_file(f"overwrite-test/out/{name}", b"{}")
        check_output_folder("s3://overwrite-test/out")  # resumed as it is
        with pytest.raises(OutputFolderRefused, match=r"^s3://overwrite-test/out holds files crawlmill never writes \(mydata.csv\)"):
            reset_output("s3://overwrite-test/out")
        fs.rm_file("overwrite-test/out/mydata.csv")
        reset_output("s3://overwrite-test/out")
        assert not fs.exists("overwrite-test/out/_tasks.json") and not fs.exists("overwrite-test/out/part-00000.parquet")


def test_a_workers_own_state_is_walked_by_the_collector_after_its_first_task_only(tmp_path):
    """Before a worker's second task, what its first left (modules, libraries' state) is frozen out of
    the collections run after every task (they walked it all: 60 ms of a small ingest task); every
    task's garbage cycles are still collected, the first task's included. In a fresh process: the
    freeze is for good."""
    probe = textwrap.dedent(f"""
        import gc, json, weakref
        from crawlmill.pipeline.runner import run_task
        class Node:
            pass
        refs, frozen = [], []
        def task():  # a task's garbage: a reference cycle, gone only with a collection
            frozen.append(gc.get_freeze_count())
            a, b = Node(), Node()
            a.other, b.other = b, a
            refs.append(weakref.ref(a))
            return {{"ok": True}}
        for n in range(3):
            run_task(task, (), "{tmp_path}/marker-%d.json" % n, ())
        print(json.dumps([[r() is None for r in refs], frozen, gc.get_freeze_count()]))
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    freed, frozen_at_start, frozen_after = json.loads(done.stdout.strip().splitlines()[-1])
    assert freed == [True, True, True] and frozen_at_start[0] == 0 and frozen_at_start[1] > 10_000, (freed, frozen_at_start)
    assert frozen_at_start[1] == frozen_at_start[2] == frozen_after  # frozen once


def test_overwrite_of_an_output_folder_reached_by_a_symbolic_link_deletes_what_it_points_at(ray_local, tmp_path):
    """`--output out` where out -> /big/disk/out: rmtree refuses a link and said nothing, so the stage
    found its old output and answered "done" to --overwrite. The folder the link names is emptied."""
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from tests.conftest import SAMPLES

    warcs = sorted(str(p) for p in SAMPLES.glob("crawl-data/*/segments/*/warc/*.warc.gz"))
    real, link = tmp_path / "disk/out", tmp_path / "out"
    real.mkdir(parents=True)
    link.symlink_to(real)
    assert run_stage(IngestStage(IngestConfig(inputs=warcs[:1])), link, progress=False).ok
    (real / "_parts/part-00000.json").unlink()  # so a rerun that keeps the folder would redo part 0, not start over
    stale = real / "_work"
    stale.mkdir(exist_ok=True)
    (stale / "left.txt").write_text("from the earlier run")
    result = run_stage(IngestStage(IngestConfig(inputs=warcs[:1])), link, progress=False, overwrite=True)
    assert result.ok and link.is_symlink() and not (stale / "left.txt").exists() and (real / "_SUCCESS").exists()


def test_a_folder_where_nothing_was_written_is_taken_by_the_corrected_command(tmp_path):
    """A command that stopped before any task wrote a thing (a mistyped option) left only its record
    (and `_work/` intermediates): the corrected command, with other settings, takes the folder. Once
    a task has finished (a marker, a part, a quarantine entry), other settings are refused."""
    record = {"stage": "lines", "settings": {"lines": 2}, "sources": ["a"]}
    check_task_record(tmp_path, record)
    (tmp_path / "_work/buckets").mkdir(parents=True)
    (tmp_path / "_work/buckets/part-00000.parquet").write_bytes(b"half")  # a killed task's, unmarked
    corrected = {**record, "settings": {"lines": 3}}
    check_task_record(tmp_path, corrected)
    assert json.loads((tmp_path / "_tasks.json").read_text()) == corrected and not (tmp_path / "_work").exists()
    for finished in ("_work/_done/map/part-00000.json", "_parts/part-00000.json", "_quarantine/part-00000.parquet", "part-00000.parquet"):
        folder = tmp_path / finished.replace("/", "_")
        check_task_record(folder, record)
        (folder / finished).parent.mkdir(parents=True, exist_ok=True)
        (folder / finished).write_text("{}")
        with pytest.raises(StageInputMismatch, match=r"other settings \(lines: 2 -> 3\)"):
            check_task_record(folder, corrected)


def test_a_record_that_is_not_a_stages_is_refused_by_name(tmp_path):
    """A `_tasks.json` that holds no mapping (damaged, or someone's): refused as a mismatch, not a crash."""
    (tmp_path / "_tasks.json").write_text("[1, 2]")
    (tmp_path / "part-00000.parquet").write_bytes(b"PAR1")
    with pytest.raises(StageInputMismatch, match=r"an earlier unknown run with a record this version cannot read"):
        check_task_record(tmp_path, {"stage": "lines", "settings": {}, "sources": []})


def test_a_finished_folder_differing_only_in_a_resume_only_setting_stays_done(tmp_path):
    record = {"stage": "lines", "settings": {"lines": 2, "work_format": 1}, "sources": ["a"]}
    check_task_record(tmp_path, record)
    (tmp_path / "part-00000.parquet").write_bytes(b"written")
    newer = {**record, "settings": {"lines": 2, "work_format": 2}}
    check_task_record(tmp_path, newer, ("work_format",), finished=True)
    assert json.loads((tmp_path / "_tasks.json").read_text()) == record  # kept: the output is that run's
    with pytest.raises(StageInputMismatch, match="work_format: 1 -> 2"):  # unfinished: its intermediates are not resumed
        check_task_record(tmp_path, newer, ("work_format",), finished=False)
    with pytest.raises(StageInputMismatch, match="lines: 2 -> 3"):
        check_task_record(tmp_path, {**record, "settings": {"lines": 3, "work_format": 2}}, ("work_format",), finished=True)


class SkippingLines(LinesStage):
    """LinesStage with a setting: lines starting with `skip` are dropped too."""

    def __init__(self, files: list[str], skip: str) -> None:
        super().__init__(files)
        self.skip = skip

    def fingerprint(self) -> dict:
        return {"skip": self.skip}

    def process(self, task: PartTask, sink: PartSink) -> None:
        for n, line in enumerate(Path(task.source).read_text().splitlines()):
            if line.startswith(("#", self.skip)):
                sink.drop("comment")
            else:
                sink.keep({"id": document_id(f"{task.source}:{n}"), "text": line})


class Killed(BaseException):
    pass


def test_an_overwrite_killed_at_any_point_never_leaves_old_parts_a_run_with_other_settings_takes(ray_local, sources, tmp_path, monkeypatch):
    """--overwrite deleted the folder in directory order: killed after `_tasks.json` went but before
    `_parts/`, a run with other settings took the old parts as its finished tasks."""
    import shutil

    from crawlmill.pipeline import output_folder

    old, fresh = tmp_path / "old", tmp_path / "fresh"
    assert run_stage(SkippingLines(sources, "doc 1"), old, progress=False).ok
    assert run_stage(SkippingLines(sources, "doc 2"), fresh, progress=False).ok
    real_remove, kill_points = output_folder._remove, 0
    for kill_at in range(64):
        out = tmp_path / f"killed-{kill_at}"
        shutil.copytree(old, out)
        calls = []

        def dying_remove(path, kill_at=kill_at, calls=calls):
            if len(calls) == kill_at:
                raise Killed
            calls.append(path)
            real_remove(path)

        monkeypatch.setattr(output_folder, "_remove", dying_remove)
        try:
            output_folder.delete_output(out)
        except Killed:
            kill_points += 1
        else:
            break
        finally:
            monkeypatch.setattr(output_folder, "_remove", real_remove)
        try:
            result = run_stage(SkippingLines(sources, "doc 2"), out, progress=False)
        except StageInputMismatch:
            continue  # the record still names the old run: refused until --overwrite finishes the deletion
        assert result.ok and result.finished_before == 0 and folder_bytes(out) == folder_bytes(fresh), kill_at
    assert kill_points >= 5  # _SUCCESS, _parts, _stats.json, parts...


def test_a_record_of_an_earlier_version_without_inputs_and_with_an_older_work_format_stays_done(tmp_path):
    """A finished dedup folder of before inputs were recorded, with `work_format: 1`: each exception
    alone held, the two together were refused."""
    old = {"stage": "dedup", "settings": {"bands": 9, "work_format": 1}, "sources": ["a"]}
    check_task_record(tmp_path, old)
    (tmp_path / "part-00000.parquet").write_bytes(b"written")
    now = {**old, "settings": {"bands": 9, "work_format": 2}, "inputs_made": {"/x/filter": "ab12"}}
    check_task_record(tmp_path, now, ("work_format",), finished=True)
    assert json.loads((tmp_path / "_tasks.json").read_text()) == old
    with pytest.raises(StageInputMismatch, match="work_format: 1 -> 2"):  # unfinished: never resumed on another format
        check_task_record(tmp_path, now, ("work_format",), finished=False)
    same_format = {**now, "settings": old["settings"]}
    check_task_record(tmp_path, same_format, ("work_format",), finished=False)  # resumed: inputs recorded from now on
    assert json.loads((tmp_path / "_tasks.json").read_text()) == same_format
