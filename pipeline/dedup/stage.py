"""`crawlmill dedup`: exact + MinHash LSH near-dedup over every input folder (every dump) at once.

Runs the distributed steps of steps.py as Ray tasks, each step resumable (a finished task's
marker is never redone), then writes the output like every stage: kept documents as Parquet
parts (one per input part), `duplicates/` mapping every removed id to its cluster and the kept
representative, `_stats.json` (dropped as exact_duplicate / near_duplicate), `_report/report.json`
and `_report/report.png` (Table-1 style: removal share within each dump and over the first k dumps).
Intermediate shuffle files live in `_work/` and are kept for resume; delete it when done.

Run it: `crawlmill dedup out/CC-MAIN-2024-10/filter out/CC-MAIN-2024-18/filter --output out/dedup`.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa
import pyarrow.parquet as pq

from ..parts import PartSink, atomic_write_text, input_parts
from ..progress import StageProgress
from ..ray_tasks import Job, RayOptions, run_jobs
from ..stage import PartTask, Stage, StageInputMismatch, StageResult, run_stage
from . import index, steps
from .config import DedupConfig
from .report import write_report
from .shuffle import mark_done, read_done, read_partition

DUPLICATES_SCHEMA = pa.schema(
    [("id", pa.string()), ("dump", pa.string()), ("url", pa.string()), ("reason", pa.string()),
     ("cluster", pa.string()), ("kept_id", pa.string()), ("kept_dump", pa.string())]
)  # fmt: skip
STEP_FUNCTIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "map": steps.map_part,
    "buckets": steps.reduce_buckets,
    "shingles": steps.shingle_part,
    "verify_send": steps.verify_send,
    "verify_check": steps.verify_check,
    "cc": steps.cc_round,
    "cluster_map": steps.cluster_map,
    "cluster_reduce": steps.cluster_reduce,
    "index_load": index.load_indexed_part,
    "index_save": index.save_part,
}


def _release_memory() -> None:
    """Hand freed memory back to the OS between tasks: a Ray worker runs many tasks, and without this
    its resident size would keep the high-water mark of every task it ran (BENCHMARKS.md)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_step_task(config: DedupConfig, step: str, marker_dir: str, task: str, args: tuple) -> dict[str, Any]:
    """One task of one step; its marker is written after its outputs."""
    try:
        return mark_done(Path(marker_dir), task, STEP_FUNCTIONS[step](config, *args))
    finally:
        _release_memory()


class DedupOutputStage(Stage):
    """The last step: each input part without its removed documents, plus their `duplicates/` rows."""

    name = "dedup"

    def __init__(self, parts: list[str], work: str, config: DedupConfig) -> None:
        self.parts, self.work, self.config = parts, work, config

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, path) for i, path in enumerate(self.parts)]

    def fingerprint(self) -> dict[str, Any]:
        return asdict(self.config)

    def process(self, task: PartTask, sink: PartSink) -> None:
        removed = read_partition(Path(self.work) / steps.REMOVED, task.index, steps.REMOVED_SCHEMA).to_pylist()
        by_row = {r["node"] & 0xFFFFFFFF: r for r in removed}
        row = 0
        for batch in pq.ParquetFile(task.source).iter_batches(batch_size=1024):
            duplicates = []
            for doc in batch.to_pylist():
                gone = by_row.get(row)
                row += 1
                if gone is None:
                    sink.keep(doc)
                    continue
                sink.drop(gone["reason"])
                duplicates.append({
                    "id": doc["id"], "dump": doc.get("dump"), "url": doc.get("url"), "reason": gone["reason"],
                    "cluster": gone["cluster"], "kept_id": gone["kept_id"], "kept_dump": steps.dump_name(gone["kept_dump"]),
                })  # fmt: skip
            sink.write_extra("duplicates", DUPLICATES_SCHEMA, duplicates)
        if len(by_row) and max(by_row) >= row:
            raise ValueError(f"{task.source}: removal rows point past its {row} rows; the input changed after signatures")


def _run_step(name: str, config: DedupConfig, marker_dir: Path, jobs: list[tuple[str, tuple]], options: RayOptions, progress: bool) -> dict[str, dict]:
    """Run the step's unfinished tasks; return every task's result (from its marker)."""
    todo = [Job(task, (name, str(marker_dir), task, args)) for task, args in jobs if read_done(marker_dir, task) is None]
    with StageProgress(f"dedup {name}", total=len(jobs), done=len(jobs) - len(todo), enabled=progress) as bar:
        outcome = run_jobs(run_step_task, todo, options, on_done=lambda job, r: bar.part_done({}), on_failed=lambda job, d: bar.part_failed(job.key, d), shared=(config,))
    if outcome.failures:
        raise RuntimeError(f"dedup step {name}: {len(outcome.failures)} task(s) failed: " + "; ".join(f"{k}: {d}" for k, d in outcome.failures[:5]))
    return {task: read_done(marker_dir, task) for task, _ in jobs}


def _check_plan(work: Path, plan: dict[str, Any]) -> None:
    path = work / "_plan.json"
    if path.exists():
        if json.loads(path.read_text()) != plan:
            raise StageInputMismatch(f"{work.parent} holds a dedup run of other inputs or settings ({path}); choose a new --output")
        return
    atomic_write_text(path, json.dumps(plan, indent=1))


def run_dedup(
    inputs: list[str],
    output: str | Path,
    config: DedupConfig | None = None,
    ray_options: RayOptions | None = None,
    progress: bool = True,
    index_dir: str | Path | None = None,
) -> StageResult:
    """Deduplicate `inputs` together (and against the documents of `index_dir`, which then also
    receives this run's kept documents)."""
    config = config or DedupConfig()
    options = ray_options or RayOptions()
    output = Path(output)
    parts = [part for folder in inputs for part in input_parts(folder)]
    runs = index.load_manifest(index_dir, excluding_output=output) if index_dir else []
    earlier = index.indexed_parts(index_dir, runs) if index_dir else []
    all_parts = parts + [part for _, part in earlier]  # input part numbers: new parts first
    documents = sum(pq.ParquetFile(p).metadata.num_rows for p in all_parts)
    partitions = config.partitions_for(documents)
    work = output / "_work"
    _check_plan(work, {"parts": parts, "index_runs": runs, "partitions": partitions, "config": asdict(config)})

    def run(name: str, jobs: list[tuple[str, tuple]]) -> dict[str, dict]:
        return _run_step(name, config, work / f"{name}-done", jobs, options, progress)

    per_partition = [(f"p-{p:05d}", (str(work), p, partitions)) for p in range(partitions)]

    # Step names double as their marker folders under _work/ (the cc rounds have one per round).
    mapped = run("map", [(f"part-{i:05d}", (str(work), i, path, partitions, index_dir is not None)) for i, path in enumerate(parts)])
    mapped |= run("index_load", [(f"index-{len(parts) + j:05d}", (str(work), len(parts) + j, prefix, partitions)) for j, (prefix, _) in enumerate(earlier)])
    buckets = run("buckets", [(f"p-{p:05d}", (str(work), p, partitions, len(all_parts))) for p in range(partitions)])
    run("shingles", [(f"part-{i:05d}", (str(work), i, path, partitions)) for i, path in enumerate(all_parts)])
    run("verify_send", per_partition)
    verified = run("verify_check", per_partition)
    round_no, rounds = 0, []
    while True:
        result = _run_step("cc", config, work / "cc" / f"done-{round_no:04d}", [(f"p-{p:05d}", (str(work), round_no, p, partitions)) for p in range(partitions)], options, progress)
        changed = sum(r["changed"] for r in result.values())
        rounds.append(changed)
        if round_no > 0 and changed == 0:
            break
        round_no += 1
        if round_no >= config.max_rounds:
            raise RuntimeError(f"connected components did not converge in {config.max_rounds} rounds")
    run("cluster_map", [(f"p-{p:05d}", (str(work), round_no, p, partitions)) for p in range(partitions)])
    clustered = run("cluster_reduce", [(f"p-{p:05d}", (str(work), p, partitions, len(all_parts))) for p in range(partitions)])

    result = run_stage(DedupOutputStage(parts, str(work), config), output, options, progress)
    if not result.ok:
        return result
    if index_dir is not None:
        run_dir = Path(index_dir) / f"run-{len(runs):04d}"
        run("index_save", [(f"part-{i:05d}", (str(work), i, str(run_dir / f"part-{i:05d}"))) for i in range(len(parts))])
        index.append_run(index_dir, output, [str((output / f"part-{i:05d}.parquet").resolve()) for i in range(len(parts))])
    summary = {
        "documents": documents,
        "indexed_documents": documents - sum(mapped[f"part-{i:05d}"]["documents"] for i in range(len(parts))),
        "partitions": partitions,
        "exact_pairs": sum(r["exact_pairs"] for r in buckets.values()),
        "candidate_pairs": sum(r["candidates"] for r in buckets.values()),
        "verified_pairs": sum(r["verified"] for r in verified.values()),
        "cc_rounds": len(rounds),
        "clusters_with_duplicates": sum(r["clusters"] for r in clustered.values()),
        "largest_cluster": max((r["largest_cluster"] for r in clustered.values()), default=0),
    }
    dumps: dict[str, int] = {}
    for r in mapped.values():
        for dump, n in r["dumps"].items():
            dumps[dump] = dumps.get(dump, 0) + n
    write_report(output, work, partitions, dumps, summary)
    return result
