"""`crawlmill dedup`: exact + MinHash LSH near-dedup over every input folder (every dump) at once.

Runs the distributed steps of steps.py through the runner (each a set of resumable Ray tasks whose
finished tasks are never redone), then writes the output like every stage: kept documents as Parquet
parts (one per input part), `_duplicates/` mapping every removed id to its cluster and the kept
representative ("_": a Parquet reader of the folder reads the parts alone; before 2026-12-07
`duplicates/`, which a finished folder keeps), `_stats.json` (dropped as same_page / exact_duplicate / near_duplicate; same_page:
another document with the same `id`, the same capture, e.g. its WARC and its WET copy), `_report/report.json`
and `_report/report.png` (Table-1 style: removal share within each dump and over the first k dumps).
Intermediate shuffle files live in `_work/` and are kept for resume; delete it when done. Its
format (steps.WORK_FORMAT) and the text format (shingles.TEXT_FORMAT; with --index, the index's)
are part of the fingerprint: a `_work/` of an older version is refused like other settings
(--overwrite recomputes it), never resumed; a finished folder of one stays done
(`resume_only_settings`).

Run it: `crawlmill dedup out/CC-MAIN-2024-10/filter out/CC-MAIN-2024-18/filter --output out/dedup`.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import pyarrow as pa

from crawlmill.files import AnyPath, as_path, parquet_file, read_table, resolved

from ..parts import PartSink, input_parts
from ..runner import StageContext, Task
from ..stage import PartStage, PartTask, Stage, StageResult, run_parts
from . import index, steps, verify
from .config import DedupConfig
from .report import NO_DUMP, REPORT_DIR, report_dumps, report_map, report_reduce, write_report
from .shingles import TEXT_FORMAT

DUPLICATES_DIR = "_duplicates"
LEGACY_DUPLICATES_DIR = "duplicates"  # what a dedup before 2026-12-07 wrote
DUPLICATES_SCHEMA = pa.schema(
    [("id", pa.string()), ("dump", pa.string()), ("url", pa.string()), ("reason", pa.string()),
     ("cluster", pa.string()), ("kept_id", pa.string()), ("kept_dump", pa.string())]
)  # fmt: skip


class DedupOutput(PartStage):
    """The last step: each input part without its removed documents, plus their `_duplicates/` rows."""

    name = "dedup"

    def __init__(self, parts: list[str], work: str, config: DedupConfig) -> None:
        super().__init__(config)
        self.parts, self.work = parts, work

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, path) for i, path in enumerate(self.parts)]

    def process(self, task: PartTask, sink: PartSink) -> None:
        removed = read_table(steps.removed_path(as_path(self.work), task.index), schema=steps.REMOVED_SCHEMA).to_pylist()
        by_row = {r["node"] & 0xFFFFFFFF: r for r in removed}
        row = 0
        for batch in parquet_file(task.source).iter_batches(batch_size=1024):
            duplicates = []
            for doc in batch.to_pylist():
                gone = by_row.get(row)
                row += 1
                if gone is None:
                    sink.keep(doc)
                    continue
                sink.drop(gone["reason"])
                if gone["cluster"] is None and gone["kept_id"] is None:  # no_text / no_id: not anyone's duplicate
                    continue
                duplicates.append({
                    "id": doc["id"], "dump": doc.get("dump"), "url": doc.get("url"), "reason": gone["reason"],
                    "cluster": gone["cluster"], "kept_id": gone["kept_id"], "kept_dump": steps.dump_name(gone["kept_dump"]),
                })  # fmt: skip
            sink.write_extra(DUPLICATES_DIR, DUPLICATES_SCHEMA, duplicates)
        if len(by_row) and max(by_row) >= row:
            raise ValueError(f"{task.source}: removal rows point past its {row} rows; the input changed after signatures")


class DedupStage(Stage):
    """Exact + MinHash LSH dedup of `config.inputs` together, and against `config.index`'s earlier runs."""

    name = "dedup"
    resume_only_settings = ("work_format", "text_format", "duplicates_dir")  # a finished folder of an older version stays done
    state_fields = ("index",)  # the joint run's index is `_index/` in its output folder (dumps.py)

    def __init__(self, config: DedupConfig) -> None:
        super().__init__(config)
        self.parts = [part for folder in config.inputs for part in input_parts(folder)]
        self.manifest: list[dict[str, Any]] = []  # every run of the index
        self.position: int | None = None  # this run's place in it (a run again), None for a new run
        self.runs: list[dict[str, Any]] = []  # the index's runs before this one: deduplicated against
        self.run_dir = ""  # where this run's kept rows are stored in the index
        self.earlier: list[tuple[str, str]] = []
        self.documents = self.partitions = 0
        self.text_format = TEXT_FORMAT  # or the index's (index.text_format_of)

    def plan(self, output: AnyPath) -> None:
        index_dir = self.config.index
        if index_dir:
            self.manifest = index.load_manifest(index_dir)
            self.position = index.run_position(self.manifest, output)
            new = self.position is None
            self.runs = self.manifest if new else self.manifest[: self.position]
            self.run_dir = index.new_run_dir(self.manifest) if new else self.manifest[self.position]["dir"]
            self.text_format = index.text_format_of(index_dir)
        self.earlier = index.indexed_parts(index_dir, self.runs) if index_dir else []
        all_parts = self.parts + [part for _, part in self.earlier]  # input part numbers: new parts first
        self.documents = sum(parquet_file(p).metadata.num_rows for p in all_parts)
        self.partitions = self.config.partitions_for(self.documents)

    def check_recompute(self) -> None:
        """Refuse (index.IndexRerunRefused) to compute a run of the index that is not its last (a
        finished one is skipped as done: its fingerprint names only the runs before it)."""
        if self.config.index:
            index.refuse_rerun(self.config.index, self.manifest, self.position)

    @classmethod
    def check_overwrite(cls, config: DedupConfig, output: AnyPath) -> None:
        """A run of the index that is not its last is refused before its folder is looked at: the
        joint dedup's folder holds the appended dumps' folders, which the index explains."""
        if config.index:
            manifest = index.load_manifest(config.index)
            index.refuse_rerun(config.index, manifest, index.run_position(manifest, output))

    def sources(self) -> list[str]:
        return self.parts

    def _settings(self) -> dict[str, Any]:
        # resolved, as the partitions are: the default and the value it resolves to are one setting
        per_task = self.config.partitions_per_task_for(self.partitions)
        return {**self.config.settings(), "partitions": self.partitions, "partitions_per_task": per_task, "index": self.config.index, "index_runs": index.recorded_runs(self.runs)}

    def fingerprint(self) -> dict[str, Any]:
        # duplicates_dir: an unfinished folder of the version that wrote `duplicates/` would end with
        # its rows split across two folders; refused (the runner says to --overwrite), a finished one stays.
        return {**self._settings(), "work_format": steps.WORK_FORMAT, "text_format": self.text_format, "duplicates_dir": DUPLICATES_DIR}

    def run(self, ctx: StageContext) -> dict[str, Any]:
        config, parts, partitions, work = self.config, self.parts, self.partitions, str(ctx.work)
        all_parts = parts + [part for _, part in self.earlier]

        def step(name: str, fn: Callable[..., dict[str, Any]], tasks: list[tuple[str, tuple]]) -> dict[str, dict]:
            return ctx.step(name, fn, [Task(key, args) for key, args in tasks], shared=(config,))

        def partition_step(name: str, fn: Callable[..., dict[str, Any]], before: tuple, after: tuple = ()) -> list[dict]:
            """`fn(config, *before, p, *after)` for every partition p, a block of them a task
            (steps.partition_block); each partition's result, in partition order."""
            blocks = config.blocks(partitions)
            tasks = [(f"p-{first:05d}" if count == 1 else f"p-{first:05d}-{first + count - 1:05d}", (fn, first, count, before, after)) for first, count in blocks]
            return [r for block in step(name, steps.partition_block, tasks).values() for r in block["partitions"].values()]

        text_format = self.text_format
        # Map and shingles tasks take runs of `size` input parts, named by their first part; the
        # shuffles back by input part go to these runs (steps.part_group_size).
        size = steps.part_group_size(len(all_parts), partitions)
        part_groups = steps.groups(list(enumerate(all_parts)), size)
        new_runs = steps.groups(list(enumerate(parts)), size)
        index_runs = steps.groups([(len(parts) + j, prefix) for j, (prefix, _) in enumerate(self.earlier)], size)
        by_part = (size, len(part_groups))
        mapped = step("map", steps.map_parts, [(f"part-{run[0][0]:05d}", (work, f"part-{run[0][0]:05d}", run, partitions, *by_part, config.index is not None, text_format)) for run in new_runs])
        indexed = step("index_load", index.load_indexed_parts, [(f"index-{run[0][0]:05d}", (work, f"index-{run[0][0]:05d}", run, partitions)) for run in index_runs])
        buckets = partition_step("buckets", steps.reduce_buckets, (work,), (partitions, *by_part))
        step("shingles", verify.shingle_parts, [(f"group-{g:05d}", (work, g, run, partitions, text_format)) for g, run in enumerate(part_groups)])
        partition_step("verify_send", verify.verify_send, (work,), (partitions,))
        verified = partition_step("verify_check", verify.verify_check, (work,), (partitions,))
        round_no, rounds = 0, []
        while True:  # connected components: one step per round, until a round changes nothing
            result = partition_step(f"cc-{round_no:04d}", steps.cc_round, (work, round_no), (partitions,))
            changed = sum(r["changed"] for r in result)
            rounds.append(changed)
            if round_no > 0 and changed == 0:
                break
            round_no += 1
            if round_no >= config.max_rounds:
                raise RuntimeError(f"connected components did not converge in {config.max_rounds} rounds")
        partition_step("cluster_map", steps.cluster_map, (work, round_no), (partitions,))
        clustered = partition_step("cluster_reduce", steps.cluster_reduce, (work,), (partitions, *by_part))
        new_groups = [(g, [i for i, _ in run if i < len(parts)]) for g, run in enumerate(part_groups)]
        step("removed_parts", steps.split_removed, [(f"group-{g:05d}", (work, g, run)) for g, run in new_groups if run])
        # The report's counts (report.py), before anything is written outside _work/.
        dumps: dict[str, int] = {}
        for r in [*mapped.values(), *indexed.values()]:
            for dump, n in r["dumps"].items():
                dumps[dump] = dumps.get(dump, 0) + n
        codes = [steps.dump_code(d) for d in report_dumps(dumps)[0]]  # NO_DUMP: 0
        partition_step("report_map", report_map, (work, round_no), (partitions,))
        counted = partition_step("report_reduce", report_reduce, (work,), (codes,))

        stats = run_parts(ctx, DedupOutput(parts, work, config))
        if config.index is not None:
            run_dir = as_path(config.index) / self.run_dir
            step("index_save", index.save_part, [(f"part-{i:05d}", (work, i, str(run_dir / f"part-{i:05d}"))) for i in range(len(parts))])
            index.append_run(config.index, ctx.output, [resolved(ctx.output / f"part-{i:05d}.parquet") for i in range(len(parts))], self.run_dir, text_format)
        same_page = sum(r.get("same_page_pairs", 0) for r in buckets)  # documents sharing an id: one capture
        summary = {
            "documents": self.documents,
            "indexed_documents": sum(r["documents"] for r in indexed.values()),
            "partitions": partitions,
            "text_format": text_format,
            "exact_pairs": sum(r["exact_pairs"] for r in buckets),
            # Only when some documents share an id: a corpus without any reports what it did before.
            **({"same_page_pairs": same_page} if same_page else {}),
            "candidate_pairs": sum(r["candidates"] for r in buckets),
            "verified_pairs": sum(r["verified"] for r in verified),
            "cc_rounds": len(rounds),
            "clusters_with_duplicates": sum(r["clusters"] for r in clustered),
            "largest_cluster": max((r["largest_cluster"] for r in clustered), default=0),
        }
        # Dumps only the index holds: their documents are earlier runs' kept ones (0% removed here).
        new = {d for r in mapped.values() for d in r["dumps"]}
        indexed_only = sorted({d for r in indexed.values() for d in r["dumps"]} - new)
        if indexed_only:
            summary["indexed_dumps"] = indexed_only
        write_report(ctx.output, dumps, summary, counted)
        return stats

    def report(self, result: StageResult) -> list[str]:
        lines = super().report(result)
        report = json.loads((result.output_dir / REPORT_DIR / "report.json").read_text())
        undumped = {row["dump"]: row["documents"] for row in report["within_single_dump"]}.get(NO_DUMP, 0)
        if report.get("text_format", TEXT_FORMAT) != TEXT_FORMAT:
            lines.append(
                f"text format {report['text_format']}: the dedup index was begun by a crawlmill before 2026-12, and its runs keep "
                "its normalization so that they compare (combining marks as spaces; Thai, Lao, Khmer, Myanmar as words; "
                f"docs/dedup.md); a new index uses {TEXT_FORMAT}"
            )
        indexed = set(report.get("indexed_dumps", ()))
        for row in report["cumulative"]:
            if row["through"] != NO_DUMP:
                earlier = " (the index's kept documents: their duplicates were removed by the run that added them)" if row["through"] in indexed else ""
                lines.append(f"first {row['dumps']} dump(s) through {row['through']}: {100 * row['share']:.1f}% removed{earlier}")
            else:  # the last row: every document, those without a dump too
                named = f"all {row['dumps'] - 1} dump(s) and " if row["dumps"] > 1 else ""
                lines.append(f"{named}{undumped} document(s) of {NO_DUMP}: {100 * row['share']:.1f}% removed")
        return lines
