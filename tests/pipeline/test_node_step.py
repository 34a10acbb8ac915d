"""Node steps (runner.StageContext.node_step) on a real local Ray: one load per node, forked
workers, a crashed worker or a node gone, Ray's retry of a node task."""

import json
import os
import signal
import time


from crawlmill.pipeline.runner import Task, run_stage
from crawlmill.pipeline.stage import Stage


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
