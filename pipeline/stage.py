"""The stage framework: run a Stage's parts as Ray tasks, resumably, and write its stats.

A `Stage` lists its input units (`PartTask`s) and turns one unit into one output part through a
`PartSink` (see parts.py). `run_stage` does everything else, once for every stage:

- refuses an output folder made from other inputs or settings (`_tasks.json`);
- removes temporaries of an interrupted run and skips parts whose marker exists;
- runs the remaining parts as Ray tasks (ray_tasks.py), at most `max_in_flight` at a time, with a progress bar;
- a part that raises is reported with its source and error and the others go on; the run then
  ends without `_SUCCESS` and a rerun retries only the unfinished parts;
- when every part is finished, merges the part counts into `_stats.json` and writes `_SUCCESS`.

Nothing here depends on the machine, time or scheduling order, so the same inputs and settings
give byte-identical output folders.
"""

from __future__ import annotations

import json
import logging
import shutil
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from .parts import PARTS_DIR, TMP_MARK, PartSink, PartStats, atomic_write_text, marker_path
from .ray_tasks import Job, RayOptions, ensure_ray, run_jobs  # noqa: F401 - RayOptions, ensure_ray re-exported
from .schema import DOCUMENT_SCHEMA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PartTask:
    index: int
    source: str


class SourceReadError(OSError):
    """Reading a source failed in a way a retry may fix (network, object store). Ray retries it."""


class StageInputMismatch(RuntimeError):
    pass


class Stage(ABC):
    """One pipeline stage. Subclasses hold their config and implement `tasks` and `process`."""

    name: ClassVar[str]
    schema: ClassVar[pa.Schema] = DOCUMENT_SCHEMA
    keep_dropped: bool = False

    @abstractmethod
    def tasks(self) -> list[PartTask]:
        """The input units, in a deterministic order; runs on the driver."""

    @abstractmethod
    def process(self, task: PartTask, sink: PartSink) -> None:
        """Turn one input unit into sink calls; runs in a Ray worker."""

    def fingerprint(self) -> dict[str, Any]:
        """Settings that change the output; an output folder is never mixed across two of them."""
        return {}


@dataclass
class StageResult:
    stats: dict[str, Any] | None
    output_dir: Path
    finished_before: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def run_part(stage: Stage, task: PartTask, output_dir: str) -> dict[str, Any]:
    """Process one part to completion (also usable without Ray, e.g. in benchmarks)."""
    sink = PartSink(
        Path(output_dir), task.index, task.source, stage.name, stage.schema, keep_dropped=stage.keep_dropped
    )
    try:
        stage.process(task, sink)
        return sink.commit().to_json()
    except BaseException:
        sink.abort()
        raise


def _remove_temporaries(output_dir: Path) -> None:
    for path in output_dir.rglob(f"{TMP_MARK}*"):
        path.unlink(missing_ok=True)


def _check_tasks_file(output_dir: Path, stage: Stage, tasks: list[PartTask]) -> None:
    check_task_record(output_dir, {"stage": stage.name, "settings": stage.fingerprint(), "sources": [t.source for t in tasks]})


def check_task_record(output_dir: Path, wanted: dict[str, Any]) -> None:
    """Record what an output folder is made from (`_tasks.json`), or refuse a folder made from
    other inputs or settings, so a resume never mixes two runs."""
    path = output_dir / "_tasks.json"
    if path.exists():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != wanted:
            raise StageInputMismatch(
                f"{output_dir} holds output of a {found.get('stage')} run with other inputs or settings "
                f"(see {path}); choose a new --output folder or delete this one"
            )
        return
    atomic_write_text(path, json.dumps(wanted, indent=1, ensure_ascii=False))


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


def run_stage(
    stage: Stage, output_dir: str | Path, ray_options: RayOptions | None = None, progress: bool = True
) -> StageResult:
    from .progress import StageProgress

    output_dir = Path(output_dir)
    tasks = stage.tasks()
    output_dir.mkdir(parents=True, exist_ok=True)
    _check_tasks_file(output_dir, stage, tasks)
    _remove_temporaries(output_dir)
    (output_dir / PARTS_DIR).mkdir(exist_ok=True)

    todo = [t for t in tasks if not marker_path(output_dir, t.index).exists()]
    result = StageResult(stats=None, output_dir=output_dir, finished_before=len(tasks) - len(todo))
    if todo:
        (output_dir / "_SUCCESS").unlink(missing_ok=True)
        jobs = [Job(t.source, (t, str(output_dir))) for t in todo]
        with StageProgress(stage.name, total=len(tasks), done=result.finished_before, enabled=progress) as bar:
            outcome = run_jobs(
                run_part,
                jobs,
                ray_options or RayOptions(),
                on_done=lambda job, part: bar.part_done(part),
                on_failed=lambda job, detail: bar.part_failed(job.key, detail),
                retry_exceptions=[SourceReadError],
                shared=(stage,),
            )
        result.failures = outcome.failures
    if result.failures:
        return result

    parts = [
        PartStats.from_json(json.loads(marker_path(output_dir, t.index).read_text(encoding="utf-8")))
        for t in tasks
    ]
    result.stats = merge_stats(stage.name, parts)
    atomic_write_text(output_dir / "_stats.json", json.dumps(result.stats, indent=1, ensure_ascii=False))
    atomic_write_text(output_dir / "_SUCCESS", "")
    return result


def reset_output(output_dir: str | Path) -> None:
    """Delete a stage output folder (the CLI's --overwrite)."""
    shutil.rmtree(output_dir, ignore_errors=True)
