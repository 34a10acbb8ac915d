"""The runner (pipeline/runner.py) on a real local Ray: resume, failure isolation, input checks,
determinism, for part stages and multi-step stages."""

import json
import os
import time
from pathlib import Path

import pytest

from crawlmill.pipeline.runner import Task, run_stage
from crawlmill.pipeline.task_record import check_task_record
from crawlmill.pipeline.stage import Stage, StageInputError, StageInputMismatch
from tests.conftest import REPO
from tests.pipeline.lines_stage import LinesStage, folder_bytes


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
