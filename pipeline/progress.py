"""Progress display for a running stage: parts done, records in and kept, rate and ETA.

On a terminal, a rich progress bar. Elsewhere (a `ray job submit` log, a file, Airflow's task log)
a redrawn bar is useless: rich draws nothing until the end, or control codes when forced; so there
progress is plain lines, one when a step starts, at most one per `interval` seconds while it runs,
and one when it ends:

    filter: 3/10 parts, 1,234 records, 1,000 kept, 0 quarantined, 12s
"""

from __future__ import annotations

import os
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
    ) -> None:  # fmt: skip
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.stage, self.total, self.completed, self.unit = stage, total, done, unit
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
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)
        if self.as_lines:
            self._line()  # the step's last figures, also when it stopped early

    def line(self) -> str:
        """The step's figures as one plain line."""
        text = f"{self.stage}: {self.completed:,}/{self.total:,} {self.unit}"
        if self.counted:
            text += f", {self.records_in:,} records, {self.kept:,} kept, {self.quarantined:,} quarantined"
        return f"{text}, {self.clock() - self.started:.0f}s"

    def part_done(self, part: dict[str, Any]) -> None:
        self.completed += 1
        if "in" not in part:  # a task that is not a document part: no record counts to show
            self.progress.update(self.task, advance=1)
            self._tick()
            return
        self.counted = True
        self.records_in += part["in"]
        self.kept += part["kept"]
        self.quarantined += part["quarantined"]
        self.progress.update(
            self.task,
            advance=1,
            records=f"{self.records_in:,} records, {self.kept:,} kept, {self.quarantined:,} quarantined",
        )
        self._tick()

    def advance(self, count: int) -> None:
        """`count` more units done, for a step counted in units (tokens) rather than parts."""
        self.completed += count
        self.progress.update(self.task, advance=count)
        self._tick()

    def part_failed(self, source: str, detail: str) -> None:
        self.console.print(f"[red]part failed[/red] {escape(source)}: {escape(detail)}", highlight=False)
        self.completed += 1
        self.progress.update(self.task, advance=1)
        self._tick()

    def _tick(self) -> None:
        """In a log: a line when `interval` has passed since the last one (the last task's comes at exit)."""
        if self.as_lines and self.completed < self.total and self.clock() - self.last_line >= self.interval:
            self._line()

    def _line(self) -> None:
        self._print(self.line())
        self.last_line = self.clock()

    def _print(self, text: str) -> None:
        self.console.print(escape(text), highlight=False)
