"""Progress display for a running stage: parts done, records in and kept, rate and ETA (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StageProgress:
    def __init__(self, stage: str, total: int, done: int, enabled: bool = True, unit: str = "parts") -> None:
        self.console = Console(stderr=True)
        self.records_in = 0
        self.kept = 0
        self.quarantined = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("{task.fields[records]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(stage, total=total, completed=done, records="")
        if done and enabled:
            self.console.print(f"{stage}: {done} of {total} {unit} already finished, skipping them")

    def __enter__(self) -> "StageProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def part_done(self, part: dict[str, Any]) -> None:
        if "in" not in part:  # a task that is not a document part: no record counts to show
            self.progress.update(self.task, advance=1)
            return
        self.records_in += part["in"]
        self.kept += part["kept"]
        self.quarantined += part["quarantined"]
        self.progress.update(
            self.task,
            advance=1,
            records=f"{self.records_in:,} records, {self.kept:,} kept, {self.quarantined:,} quarantined",
        )

    def part_failed(self, source: str, detail: str) -> None:
        self.console.print(f"[red]part failed[/red] {source}: {detail}")
        self.progress.update(self.task, advance=1)
