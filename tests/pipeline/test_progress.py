"""Progress: plain lines where stderr is no terminal (a job log), a bar on a terminal."""

import io

from rich.console import Console

from crawlmill.pipeline.progress import StageProgress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def log_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=False, soft_wrap=True), buffer


def part(n: int, kept: int) -> dict:
    return {"in": n, "kept": kept, "quarantined": 0}


def test_in_a_log_a_line_at_start_every_interval_and_at_the_end():
    console, buffer = log_console()
    clock = Clock()
    with StageProgress("filter", total=4, done=0, console=console, interval=10, clock=clock) as bar:
        bar.part_done(part(100, 90))  # before the interval: no line
        clock.now = 12
        bar.part_done(part(1000, 900))  # 2/4 after 12 s: a line
        clock.now = 13
        bar.part_done(part(10, 1))  # 1 s later: none
        clock.now = 30
        bar.part_done(part(234, 9))  # the last: its line comes at exit
    assert buffer.getvalue().splitlines() == [
        "filter: 4 of 4 parts to do",
        "filter: 2/4 parts, 1,100 records, 990 kept, 0 quarantined, 12s, 92 records/s, about 24s left",  # the rate since the first part
        "filter: 4/4 parts, 1,344 records, 1,000 kept, 0 quarantined, 30s, 45 records/s",
    ]
    assert "\x1b" not in buffer.getvalue()  # no control codes in a log


def test_in_a_log_resumed_steps_and_tasks_without_counts_read_plainly():
    console, buffer = log_console()
    with StageProgress("dedup buckets", total=3, done=1, unit="tasks", console=console, interval=0, clock=Clock()) as bar:
        bar.part_done({})
        bar.part_failed("part [2]", "ValueError: bad")
    assert buffer.getvalue().splitlines() == [
        "dedup buckets: 1 of 3 tasks already finished, skipping them",
        "dedup buckets: 2 of 3 tasks to do",
        "dedup buckets: 2/3 tasks, 0s",
        "part failed part [2]: ValueError: bad",
        "dedup buckets: 3/3 tasks, 0s",
    ]


def test_in_a_log_a_long_task_gets_a_line_anyway_and_a_polled_step_moves_before_its_results():
    """A task of minutes (one big WARC file) left a log silent; a per-node step (quality score)
    reported nothing until a node finished all its tasks."""
    console, buffer = log_console()
    clock, finished = Clock(), [0]
    bar = StageProgress("quality score", total=4, done=1, unit="tasks (per node)", console=console, interval=1, heartbeat=5, clock=clock,
                        poll=lambda: finished[0])  # fmt: skip
    bar.watch_once = lambda: None  # the looks of the watch thread are the test's own (below), not every second
    with bar:
        clock.now = 4
        StageProgress.watch_once(bar)  # nothing finished for 4 s: no line yet
        clock.now = 6
        StageProgress.watch_once(bar)  # 6 s: a line anyway
        finished[0], clock.now = 3, 8  # two tasks' markers are there
        StageProgress.watch_once(bar)
        for _ in range(3):  # the node's results, at its end
            bar.part_done({})
    assert buffer.getvalue().splitlines() == [
        "quality score: 1 of 4 tasks (per node) already finished, skipping them",
        "quality score: 3 of 4 tasks (per node) to do",
        "quality score: 1/4 tasks (per node), 6s",
        "quality score: 3/4 tasks (per node), 8s",  # the first tasks of this run: no rate yet
        "quality score: 4/4 tasks (per node), 8s",
    ]


def test_disabled_prints_nothing():
    console, buffer = log_console()
    with StageProgress("filter", total=2, done=1, enabled=False, console=console, interval=0) as bar:
        bar.part_done(part(1, 1))
    assert buffer.getvalue() == ""


def test_on_a_terminal_a_bar_and_no_lines():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with StageProgress("filter", total=2, done=0, console=console, interval=0) as bar:
        bar.part_done(part(5, 4))
        bar.part_done(part(5, 4))
    assert not bar.as_lines
    assert "2/2" in buffer.getvalue() and "8 kept" in buffer.getvalue()
    assert "filter: 2/2 parts" not in buffer.getvalue()


def test_a_resumed_step_says_its_record_counts_are_of_this_runs_parts():
    console, buffer = log_console()
    with StageProgress("filter", total=3, done=2, console=console, interval=0, clock=Clock()) as bar:
        bar.part_done(part(7, 5))
    assert buffer.getvalue().splitlines()[-1] == "filter: 3/3 parts, 7 records, 5 kept, 0 quarantined in this run's parts, 0s"


def test_the_watch_thread_looks_by_itself_and_ends_with_the_step():
    console, buffer = log_console()
    looks = []
    with StageProgress("dedup map", total=2, done=0, unit="tasks", console=console, interval=1, poll=lambda: looks.append(1) or 1) as bar:
        assert bar.watcher is not None and bar.watcher.is_alive()
        bar.stopped.wait(2.5)
    assert not bar.watcher.is_alive() and looks  # it looked at least once and ended with the step
    assert buffer.getvalue().splitlines()[-1].startswith("dedup map: 1/2 tasks")


def test_a_step_counted_in_its_own_units_shows_them_with_the_total_it_reads_and_its_last_count():
    """The train stage's one task showed `0/1 tasks` for the whole training: its bar counts the
    steps the trainer logs, against the run's length once the trainer wrote it (a first guess before)."""
    console, buffer = log_console()
    clock, logged = Clock(), [(100, 0)]  # resumed at step 100; the length not written yet
    bar = StageProgress("train", total=380, done=100, unit="steps", console=console, interval=1, clock=clock,
                        poll=lambda: logged[-1], polled_units=True)  # fmt: skip
    bar.watch_once = lambda: None
    with bar:
        logged.append((150, 400))  # run.json says 400 steps
        clock.now = 10
        StageProgress.watch_once(bar)
        logged.append((200, 400))
        clock.now = 20
        StageProgress.watch_once(bar)
        logged.append((400, 400))  # the last steps, logged before the task returned
        bar.part_done({"steps": 400})  # the task's result is no step more
    assert buffer.getvalue().splitlines() == [
        "train: 100 of 380 steps already finished, skipping them",
        "train: 280 of 380 steps to do",
        "train: 150/400 steps, 10s",  # start-up (the model built) is no rate of steps
        "train: 200/400 steps, 20s, about 40s left",
        "train: 400/400 steps, 20s",
    ]


def test_a_step_counted_in_its_own_units_does_not_look_again_after_a_failure():
    console, buffer = log_console()
    looks = []
    bar = StageProgress("train", total=10, done=0, unit="steps", console=console, interval=1, clock=Clock(),
                        poll=lambda: looks.append(1) or (3, 10), polled_units=True)  # fmt: skip
    bar.watch_once = lambda: None
    try:
        with bar:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert not looks  # a store that does not answer must not hold up a Ctrl-C
    assert buffer.getvalue().splitlines()[-1] == "train: 0/10 steps, 0s"


def test_the_time_left_is_measured_from_the_first_part_not_from_the_start():
    """A filter whose first part took 20 s (Ray workers, the language model loaded) said "1/14
    parts, about 4m left" and ended 4 s later."""
    console, buffer = log_console()
    clock = Clock()
    with StageProgress("filter", total=14, done=0, console=console, interval=0, clock=clock) as bar:
        clock.now = 20
        bar.part_done(part(10, 9))
        clock.now = 22
        bar.part_done(part(10, 9))
    lines = buffer.getvalue().splitlines()
    assert lines[1] == "filter: 1/14 parts, 10 records, 9 kept, 0 quarantined, 20s, 0 records/s"
    assert lines[2] == "filter: 2/14 parts, 20 records, 18 kept, 0 quarantined, 22s, 1 records/s, about 24s left"


def _double(x: int) -> dict:
    return {"x": 2 * x}


def test_a_resumed_step_an_earlier_run_finished_says_so(ray_local, tmp_path, capsys):
    """Before, only a step with tasks left said what it skipped; one finished whole was passed over unsaid."""
    from crawlmill.pipeline.ray_tasks import RayOptions
    from crawlmill.pipeline.runner import StageContext, Task

    ctx = StageContext("dedup", tmp_path, RayOptions(), progress=True)
    tasks = [Task(f"t{i}", (i,)) for i in range(3)]
    assert ctx.step("map", _double, tasks) == {"t0": {"x": 0}, "t1": {"x": 2}, "t2": {"x": 4}}
    capsys.readouterr()
    assert ctx.step("map", _double, tasks) == {"t0": {"x": 0}, "t1": {"x": 2}, "t2": {"x": 4}}  # from the markers
    assert "dedup map: all 3 tasks finished before, skipping them" in capsys.readouterr().err
