"""What a stage is: a `Stage` runs steps through the runner (runner.py) and returns its counts.

Every stage is built from its config dataclass alone (`Stage(config)`; `config.inputs` names what it
reads) and implements `run(ctx)`: it calls `ctx.step(...)` for each step of its work (each step a
set of resumable Ray tasks) and returns the stage's stats (`merge_stats`). The runner does the rest
(refusing mixed inputs, resume, `_stats.json`, `_SUCCESS`).

Most stages turn each input unit into one output part: they subclass `PartStage` and implement only
`tasks()` (the units, on the driver) and `process(task, sink)` (one unit, in a Ray worker, through
a `PartSink` that guarantees the part contract of parts.py). Multi-step stages (dedup, pack, the
tokenizer) write their own `run`, and may finish with `run_parts` for their document output.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from crawlmill.files import AnyPath, as_path, parquet_file

from .output_folder import STAGE_MARKERS
from .parts import PARTS_DIR, PartSink, PartStats, part_name, redo_orphan_markers
from .schema import DOCUMENT_SCHEMA

if TYPE_CHECKING:
    from .runner import StageContext


# The columns of its input parts a stage reads by name besides `id` and `text`, which every stage
# reads: dedup's map reads each document's `dump` and `lang` (steps.map_parts), quality scores by
# `lang`. Listed here, by stage name, so that the runner checks every stage's inputs in one place
# (check_input_columns) before a task fails on a foreign folder's part.
READS_COLUMNS: dict[str, tuple[str, ...]] = {"dedup": ("dump", "lang"), "quality": ("lang",)}


class SourceReadError(OSError):
    """Reading a source failed in a way a retry may fix (network, object store). Ray retries it."""


class StageInputMismatch(ValueError):
    """The output folder holds a run of other inputs or settings."""


class StageInputError(ValueError):
    """The input cannot make this stage's output (e.g. too little text for the vocabulary asked);
    raised in a task, it stops the stage with its message (exit status 2) instead of a part failure."""


@dataclass(frozen=True)
class PartTask:
    index: int
    source: str


@dataclass
class StageResult:
    stats: dict[str, Any] | None
    output_dir: AnyPath
    finished_before: int = 0  # units (parts) already done by an earlier run
    failures: list[tuple[str, str]] = field(default_factory=list)
    already_done: bool = False  # the folder had _SUCCESS: nothing ran
    steps_finished_before: dict[str, int] = field(default_factory=dict)  # step -> tasks done before
    seconds: float = 0.0  # wall time of this run of the stage

    @property
    def ok(self) -> bool:
        return not self.failures


class Stage(ABC):
    """One pipeline stage; `config` is its config dataclass (the run config's section)."""

    name: ClassVar[str]
    remove_work: ClassVar[bool] = False  # delete `_work/` when the stage has finished
    # Its output folder may lie inside an input folder (output_folder.check_output_not_input): only
    # for a stage whose folder search cannot take its own output.
    output_inside_input: ClassVar[bool] = False
    # What makes a folder this stage's earlier output, which it resumes and --overwrite may delete
    # (output_folder.check_output_folder).
    output_markers: ClassVar[tuple[str, ...]] = STAGE_MARKERS
    # Fingerprint keys that say whether an unfinished folder's intermediates can be resumed, not
    # what the output is (a `_work/` format): a finished folder whose record differs only there
    # stays done (task_record.check_task_record).
    resume_only_settings: ClassVar[tuple[str, ...]] = ()
    # Path fields of its config that it writes as well as reads (dedup's index): they may lie inside
    # its output folder (output_folder.check_output_not_input), as the joint dedup's `_index/` does.
    state_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any) -> None:
        self.config = config

    def plan(self, output: AnyPath) -> None:
        """Called once by the runner, before `sources`/`fingerprint`/`run`, with the output folder."""

    def check_recompute(self) -> None:
        """Called by the runner after `plan`, before it deletes (--overwrite) or writes anything, when
        the output will be computed (again): raise where that must not happen (dedup: a run of its
        index that is not the last)."""

    @classmethod
    def check_overwrite(cls, config: Any, output: AnyPath) -> None:
        """Called before anything is checked or deleted for --overwrite of `output`, with the stage's
        config alone (run_folders.check_folders_first, before any stage of a run is built): raise where
        recomputing it must not happen, whatever the folder holds."""

    def check_done(self, output: AnyPath) -> None:
        """Called by the runner for a finished folder it skips: raise (a ValueError: exit status 2)
        where a file the output is made of has gone since (pack: a shard deleted by hand), so that a
        rerun does not report a damaged folder as done; or remove its `_SUCCESS` to have it made
        again where it can be (ingest: an input file replaced since)."""

    def sources(self) -> list[str]:
        """What the output is made from, in order (recorded in `_tasks.json`)."""
        return [str(i) for i in getattr(self.config, "inputs", [])]

    def input_columns(self) -> tuple[str, ...]:
        """The columns it reads of every document of its input parts (READS_COLUMNS)."""
        return ("id", "text", *READS_COLUMNS.get(self.name, ()))

    def input_files(self) -> list[str]:
        """The Parquet parts of the stage folders it reads, whose columns the runner checks before
        any task: `parts`, as every stage that reads documents keeps them; none for the others."""
        return [str(part) for part in getattr(self, "parts", ())]

    def fingerprint(self) -> dict[str, Any]:
        """Settings that change the output; an output folder is never mixed across two of them."""
        return {}

    @abstractmethod
    def run(self, ctx: StageContext) -> dict[str, Any]:
        """Do the work through `ctx.step`; return the stats written to `_stats.json`."""

    def report(self, result: StageResult) -> list[str]:
        """Lines for the command line once the stage has finished (rich markup allowed)."""
        stats = result.stats or {}
        dropped = ", ".join(f"{k} {v:,}" for k, v in stats.get("dropped", {}).items()) or "none"
        lines = [
            f"[green]{self.name} done[/green] → {result.output_dir}: {stats.get('in', 0):,} records in, "
            f"{stats.get('kept', 0):,} kept, {stats.get('quarantined', 0):,} quarantined; dropped: {dropped}"
        ]
        if result.finished_before:
            lines.append(f"({result.finished_before} part(s) were already finished and were skipped)")
        return lines


class PartStage(Stage):
    """A stage that turns each input unit into one output part (see the module docstring)."""

    schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA
    keep_dropped: bool = False

    @abstractmethod
    def tasks(self) -> list[PartTask]:
        """The input units, in a deterministic order; runs on the driver."""

    @abstractmethod
    def process(self, task: PartTask, sink: PartSink) -> None:
        """Turn one input unit into sink calls; runs in a Ray worker."""

    def sources(self) -> list[str]:
        return [t.source for t in self.tasks()]

    def run(self, ctx: StageContext) -> dict[str, Any]:
        return run_parts(ctx, self)


def run_part(stage: PartStage, task: PartTask, output_dir: str) -> dict[str, Any]:
    """Process one part to completion and return its counts (also usable without Ray, e.g. in
    benchmarks; the runner writes the returned counts as the part's marker)."""
    sink = PartSink(as_path(output_dir), task.index, task.source, stage.name, stage.schema, keep_dropped=stage.keep_dropped)
    try:
        stage.process(task, sink)
        return sink.commit().to_json()
    except BaseException:
        sink.abort()
        raise


def run_parts(ctx: StageContext, stage: PartStage) -> dict[str, Any]:
    """The parts step: one Ray task per unit, its marker `_parts/part-NNNNN.json`; the merged stats."""
    from .runner import Task

    tasks = stage.tasks()
    redo_orphan_markers(ctx.output)  # a marker whose part is gone: make the part again
    jobs = [Task(part_name(t.index), (t, str(ctx.output)), label=t.source) for t in tasks]
    results = ctx.step(
        "parts", run_part, jobs, shared=(stage,), markers=ctx.output / PARTS_DIR, unit="parts",
        retry=(SourceReadError,), title=stage.name,
    )  # fmt: skip
    return merge_stats(stage.name, [PartStats.from_json(results[job.key]) for job in jobs])


def merge_stats(stage_name: str, parts: list[PartStats]) -> dict[str, Any]:
    dropped: Counter = Counter()
    counters: Counter = Counter()
    for p in parts:
        dropped.update(p.dropped)
        counters.update(p.counters)
    return {
        "stage": stage_name,
        "parts": len(parts),
        "in": sum(p.records_in for p in parts),
        "kept": sum(p.kept for p in parts),
        "dropped": dict(sorted(dropped.items())),
        "quarantined": sum(p.quarantined for p in parts),
        "counters": dict(sorted(counters.items())),
    }


def check_input_columns(stage: Stage) -> None:
    """Refuse input parts without a column `stage` reads, or with a column of DOCUMENT_SCHEMA of
    another type (a foreign or hand-made folder's: every stage writes them all): otherwise each
    part fails at its first row or at its write with Python's or pyarrow's error, which a rerun
    does not mend. One footer per input folder, its first part's (a stage writes every part of a
    folder with one schema); no data is read."""
    needed, checked = stage.input_columns(), set()
    for part in stage.input_files():
        path = as_path(part)
        if str(path.parent) in checked:
            continue
        checked.add(str(path.parent))
        schema = parquet_file(path).schema_arrow
        where = f"{path.parent}: {path.name}"
        for name in needed:
            if name not in schema.names:
                raise StageInputError(f"{where} has no `{name}` column, which {stage.name} reads (its columns: {', '.join(schema.names)})")
        for column in schema:
            if column.name not in DOCUMENT_SCHEMA.names:
                continue  # a column of a later stage's (quality_score, group) or another's: carried as it is
            wanted = DOCUMENT_SCHEMA.field(column.name)
            if pa.types.is_null(column.type) and wanted.nullable:
                continue  # a column of nulls (pandas writes one for a column without a value): each row's is missing
            should = _should_be(wanted.type, column.type)
            if should is not None:
                raise StageInputError(f"{where}: column `{column.name}` is of type {column.type}, where {stage.name} reads {should}")


def _should_be(wanted: pa.DataType, actual: pa.DataType) -> str | None:
    """None if a column of type `actual` converts to DOCUMENT_SCHEMA's `wanted` as the stages' rows
    do (a string from any string type, a float32 score from any number), else what it must be."""
    if pa.types.is_dictionary(actual):  # pandas' categories: their values are what is read
        actual = actual.value_type
    if pa.types.is_string(wanted) or pa.types.is_large_string(wanted):
        return None if pa.types.is_string(actual) or pa.types.is_large_string(actual) or pa.types.is_string_view(actual) else "a string"
    if pa.types.is_floating(wanted):
        return None if pa.types.is_floating(actual) or pa.types.is_integer(actual) else "a number"
    return None if pa.types.is_integer(actual) else "an integer"
