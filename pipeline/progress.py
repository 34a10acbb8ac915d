"""Progress display for a running stage: parts done, records in and kept, rate and ETA.

On a terminal, a rich progress bar. Elsewhere (a `ray job submit` log, a file, Airflow's task log)
a redrawn bar is useless: rich draws nothing until the end, or control codes when forced; so there
progress is plain lines, one when a step starts, at most one per `interval` seconds while it runs
(with the rate of this run and an estimate of the time left), one every `HEARTBEAT` seconds while
nothing finishes (a long task: the log shows the step is alive), and one when it ends:

    filter: 3/10 parts, 1,234 records, 1,000 kept, 0 quarantined, 12s, 103 records/s, about 28s left

A step whose tasks report only at the end (a per-node step) passes `poll`, which counts its
finished tasks from their markers (one listing per `interval`), so the count moves as they finish.
A step of one long task that counts in its own units (the trainer's steps: `polled_units`) passes a
`poll` that returns (done, total) read from what the task writes:

    train: 1,200/10,000 steps, 3600s, about 7h20m left
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

INTERVAL_ENV = "CRAWLMILL_PROGRESS_INTERVAL"  # seconds between log lines (default 10)
HEARTBEAT = 60.0  # seconds of silence after which a log gets a line anyway


def log_interval() -> float:
    """Seconds between two progress lines in a log: $CRAWLMILL_PROGRESS_INTERVAL, else 10."""
    value = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(0.0, float(value)) if value else 10.0
    except ValueError:
        return 10.0


class StageProgress:
    def __init__(
        self, stage: str, total: int, done: int, enabled: bool = True, unit: str = "parts",
        console: Console | None = None, interval: float | None = None, clock: Callable[[], float] = time.monotonic,
        poll: Callable[[], int | tuple[int, int]] | None = None, heartbeat: float = HEARTBEAT, polled_units: bool = False,
    ) -> None:  # fmt: skip
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.stage, self.total, self.completed, self.unit = stage, total, done, unit
        self.done_before, self.polled = done, 0  # polled: finished units counted from markers (`poll`)
        self.poll, self.heartbeat = poll, heartbeat
        # polled_units: only `poll` counts (done, total): a finished task is not one more unit
        self.polled_units = polled_units
        self.lock = threading.Lock()  # the watch thread and the caller's callbacks
        self.stopped = threading.Event()
        self.watcher: threading.Thread | None = None
        self.enabled = enabled
        self.records_in = 0
        self.kept = 0
        self.quarantined = 0
        self.counted = False  # whether any finished task had record counts
        # A job log, a file or a pipe is no terminal: lines, not a bar.
        self.as_lines = enabled and not self.console.is_terminal
        self.interval = log_interval() if interval is None else interval
        self.clock = clock
        self.started = self.last_line = clock()
        # (time, count) when this run's first unit finished: the estimate of the time left is the rate
        # since then, so that start-up (Ray workers, a model loaded by every first task) does not
        # count as work: "1/14 parts, about 4m left" of a step that ended 4 s later. Parts that finish
        # with the first, in its wave, make it low at first (10 workers: by a wave's time), less so
        # with each wave; the rate from the start was high by the whole start-up, for good.
        self.first_done: tuple[float, int] | None = None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("{task.fields[records]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled or self.as_lines,
        )
        self.task = self.progress.add_task(stage, total=total, completed=done, records="")
        if done and enabled:
            self._print(f"{stage}: {done:,} of {total:,} {unit} already finished, skipping them")

    def __enter__(self) -> "StageProgress":
        self.progress.__enter__()
        if self.as_lines:
            self._print(f"{self.stage}: {self.total - self.completed:,} of {self.total:,} {self.unit} to do")
        if self.enabled and (self.as_lines or self.poll is not None):
            self.watcher = threading.Thread(target=self._watch, name=f"progress {self.stage}", daemon=True)
            self.watcher.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        if self.watcher is not None:  # a poll of a store that does not answer must not hold up a Ctrl-C
            self.watcher.join(timeout=2)
        if self.polled_units and exc[0] is None:  # the task's last units, counted after it ended (a store that does not answer: not waited for)
            last = threading.Thread(target=self._look, name=f"progress {self.stage} last look", daemon=True)
            last.start()
            last.join(timeout=5)
        self.progress.__exit__(*exc)
        if self.as_lines:
            self._line()  # the step's last figures, also when it stopped early

    @property
    def shown(self) -> int:
        return max(self.completed, self.polled)

    def line(self) -> str:
        """The step's figures as one plain line."""
        shown, elapsed = self.shown, self.clock() - self.started
        text = f"{self.stage}: {shown:,}/{self.total:,} {self.unit}"
        if self.counted:
            text += f", {self.records_in:,} records, {self.kept:,} kept, {self.quarantined:,} quarantined"
            text += " in this run's parts" if self.done_before else ""  # the parts finished before are not counted again
        text += f", {elapsed:.0f}s"
        if self.counted and elapsed >= 1:
            text += f", {self.records_in / elapsed:,.0f} records/s"
        if self.first_done is not None and shown < self.total:
            since, count = self.first_done
            if shown > count and self.clock() - since >= 1:
                text += f", about {_duration((self.clock() - since) / (shown - count) * (self.total - shown))} left"
        return text

    def _counted(self) -> None:
        """After the count moved: the first time in this run, where the rate is measured from."""
        if self.first_done is None and self.shown > self.done_before:
            self.first_done = (self.clock(), self.shown)

    def _watch(self) -> None:
        """Every `interval` (at least 1 s): the markers counted (`poll`); in a log, a line when the
        count moved, or after `heartbeat` seconds of silence."""
        wait = max(1.0, min(self.interval, self.heartbeat))
        while not self.stopped.wait(wait):
            self.watch_once()

    def watch_once(self) -> None:
        """One look of the watch thread (tests call it directly)."""
        with self.lock:
            if self.stopped.is_set():  # a poll that outlasted the step: its last line is written
                return
        moved = self._look()
        with self.lock:
            if self.stopped.is_set():
                return
            quiet = self.clock() - self.last_line
            going = self.shown < self.total or not self.total  # a total not known yet (the trainer has not written it)
            if self.as_lines and going and ((moved and quiet >= self.interval) or quiet >= self.heartbeat):
                self._line()

    def _look(self) -> bool:
        """Poll once; whether the count moved. A poll that fails (a store's hiccup) counts nothing:
        the next look may succeed."""
        try:
            polled = self.poll() if self.poll is not None else 0
        except Exception:
            return False
        with self.lock:
            if isinstance(polled, tuple):
                polled, total = polled
                if total and total != self.total:
                    self.total = total
                    self.progress.update(self.task, total=total)
            moved = polled > self.shown
            self.polled = max(self.polled, polled)
            self._counted()
            if moved:
                self.progress.update(self.task, completed=self.shown)
            return moved

    def part_done(self, part: dict[str, Any]) -> None:
        with self.lock:
            self._part_done(part)

    def _part_done(self, part: dict[str, Any]) -> None:
        self.completed += 0 if self.polled_units else 1
        self._counted()
        if "in" not in part:  # a task that is not a document part: no record counts to show
            self.progress.update(self.task, completed=self.shown)
            self._tick()
            return
        self.counted = True
        self.records_in += part["in"]
        self.kept += part["kept"]
        self.quarantined += part["quarantined"]
        self.progress.update(
            self.task,
            completed=self.shown,
            records=f"{self.records_in:,} records, {self.kept:,} kept, {self.quarantined:,} quarantined",
        )
        self._tick()

    def advance(self, count: int) -> None:
        """`count` more units done, for a step counted in units (tokens) rather than parts."""
        with self.lock:
            self.completed += count
            self._counted()
            self.progress.update(self.task, completed=self.shown)
            self._tick()

    def part_failed(self, source: str, detail: str, shown: bool = True) -> None:
        with self.lock:
            if shown:
                self.console.print(f"[red]part failed[/red] {escape(source)}: {escape(detail)}", highlight=False)
            self.completed += 0 if self.polled_units else 1
            self._counted()
            self.progress.update(self.task, completed=self.shown)
            self._tick()

    def _tick(self) -> None:
        """In a log: a line when `interval` has passed since the last one (the last task's comes at exit)."""
        if self.as_lines and self.shown < self.total and self.clock() - self.last_line >= self.interval:
            self._line()

    def _line(self) -> None:
        self._print(self.line())
        self.last_line = self.clock()

    @staticmethod
    def say(text: str) -> None:
        """One line where progress goes (stderr), for a step with nothing left to do."""
        Console(stderr=True, soft_wrap=True).print(escape(text), highlight=False)

    def _print(self, text: str) -> None:
        self.console.print(escape(text), highlight=False)


def _duration(seconds: float) -> str:
    """12s, 4m, 2h05m: an estimate, so no more precision than that."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
