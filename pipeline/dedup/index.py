"""The dedup index (`--index DIR`): earlier runs' kept documents, ready for the next run.

A new dump is deduplicated against every earlier dump without recomputing their signatures: the
index keeps each earlier run's bucket rows and node attributes, and a later run loads them as
documents that are never removed (an earlier run already published them). Only earlier
documents that end up in a candidate pair are read again, from the earlier output parts, to
verify the pair; those output folders must stay where they were, or move with the index (the
manifest records where it was written, `index`: a run's output under its old root that is found
under the new one is read there, relocation.py).

    INDEX/manifest.json                         {"text_format": 2, "index": INDEX, "runs": [{"output": DIR, "parts": [PART, ...], "dir": "run-NNNN"}]}
    INDEX/run-NNNN/part-MMMMM-buckets.parquet   bucket rows of one output part's documents
    INDEX/run-NNNN/part-MMMMM-nodes.parquet     their node attributes

A run's `dir` is chosen once, when it is first added, and recorded in its entry, so the folder a
run's rows are read from never depends on its place in the list (manifests written before `dir`
was recorded name it by position, as those runs saved it).

Every run of an index normalises and shingles text as its first run did (`text_format`,
shingles.py; a manifest without it was written before formats were recorded: format 1), so that a
later run's documents compare with the earlier runs' stored band keys.

Only the last run of an index can be run again (resumed, or recomputed with --overwrite): every
later run was deduplicated against an earlier run's kept documents, so recomputing that earlier
run would remove documents on both sides and leave the later runs built on its old output.

Node ids in the index are `output part << 32 | row in that output part`. The id band's rows (a
later document with the same id is the same page) are not stored: a later run derives them from
the nodes' ids, so an index written before that band existed works the same.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from crawlmill.files import AnyPath, as_path, atomic_write_text, read_table, resolved
from crawlmill.pathsafety import inside_folder

from ..output_folder import OutputFolderRefused
from ..relocation import moved_roots, relocate
from . import steps
from .config import DedupConfig
from .shingles import TEXT_FORMAT, check_text_format
from .shuffle import write_table


class IndexRerunRefused(OutputFolderRefused):
    """A run of the index that is not its last was asked to run again (see the module docstring)."""


def manifest_path(index_dir: Any) -> AnyPath:
    return as_path(index_dir) / "manifest.json"


def load_manifest(index_dir: Any) -> list[dict[str, Any]]:
    """Every run in the index, in order, each with `dir`: its stored rows' folder in the index."""
    path = manifest_path(index_dir)
    manifest = json.loads(path.read_text()) if path.exists() else {}
    runs = manifest.get("runs") or []
    roots = moved_roots(manifest["index"], resolved(index_dir)) if isinstance(manifest.get("index"), str) else None
    if roots:  # moved: a run's output that moved with it is read where it is now (one left behind, where it was)
        runs = [moved if as_path(moved["output"]).exists() else run for run, moved in ((run, relocate(run, *roots)) for run in runs)]
    # Without a recorded dir: run-NNNN by the entry's place in the whole manifest, where runs of
    # manifests written before `dir` existed saved their rows.
    return [{**run, "dir": inside_folder(run.get("dir", f"run-{k:04d}"), path, f"runs[{k}].dir")} for k, run in enumerate(runs)]


def text_format_of(index_dir: Any) -> int:
    """The text format the index's runs were made with; a new (or empty) index takes the current one.
    Each run's entry records it too: a run an older crawlmill appended (it rewrites the manifest
    without the key) shows as format 1 beside the others, and the index is refused as mixed."""
    path = manifest_path(index_dir)
    manifest = json.loads(path.read_text()) if path.exists() else {}
    runs = manifest.get("runs") or []
    if not runs:
        return TEXT_FORMAT
    index_format = manifest.get("text_format", 1)  # runs recorded before their own key have the index's
    formats = {run.get("text_format", index_format) for run in runs}
    if len(formats) > 1:
        made = ", ".join(f"{run['output']}: {run.get('text_format', index_format)}" for run in runs)
        raise ValueError(
            f"{path}: its runs were deduplicated with different text formats ({made}; a crawlmill before 2026-12 "
            "appended a run to an index begun by a later one): their documents do not compare; begin a new index"
        )
    try:
        return check_text_format(formats.pop())
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def run_position(runs: list[dict[str, Any]], output: Any) -> int | None:
    """The place of the run writing `output` in the manifest; None for a run not in it yet."""
    target = resolved(output)
    return next((k for k, run in enumerate(runs) if run["output"] == target), None)


def new_run_dir(runs: list[dict[str, Any]]) -> str:
    """A stored-rows folder no run of the manifest uses (run-NNNN, from its number of runs up)."""
    used = {run["dir"] for run in runs}
    k = len(runs)
    while f"run-{k:04d}" in used:
        k += 1
    return f"run-{k:04d}"


def recorded_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a run's output depends on, per earlier run (recorded in its `_tasks.json`): the earlier
    outputs and parts, not where their rows are stored, so folders recorded before `dir` still match."""
    return [{"output": run["output"], "parts": run["parts"]} for run in runs]


def refuse_rerun(index_dir: Any, runs: list[dict[str, Any]], at: int | None) -> None:
    """IndexRerunRefused when the run at `at` (run_position) is in the manifest but not its last."""
    if at is None or at == len(runs) - 1:
        return
    later = runs[at + 1 :]
    raise IndexRerunRefused(
        f"dedup --index {index_dir}: {runs[at]['output']} is run {at + 1} of {len(runs)} in the index, and "
        f"{len(later)} later run(s) ({', '.join(run['output'] for run in later)}) were deduplicated against its kept "
        "documents: recomputing it would remove documents on both sides and leave the later runs built on its old "
        "output. Only the index's last run can be run again. To redo this one, deduplicate into a new --index "
        f"folder (with new output folders), or first remove the later runs from {manifest_path(index_dir)} "
        "(and delete their output folders)."
    )


def indexed_parts(index_dir: Any, runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(stored rows prefix, output part path) of every earlier kept part, in index order."""
    return [(str(as_path(index_dir) / run["dir"] / f"part-{i:05d}"), part) for run in runs for i, part in enumerate(run["parts"])]


def _rebase(nodes: np.ndarray, part: int) -> np.ndarray:
    return (np.int64(part) << np.int64(32)) | (nodes & np.int64(0xFFFFFFFF))


def load_indexed_parts(config: DedupConfig, work: str, task: str, parts: list[tuple[int, str]], partitions: int) -> dict[str, Any]:
    """Earlier runs' kept parts (stored rows prefix) as this run's input parts (part), marked
    indexed, shuffled like map's output: one shuffle for the run of parts."""
    loaded = [_indexed_part(part, prefix) for part, prefix in parts]
    buckets = pa.concat_tables([b for b, _ in loaded]) if loaded else steps.BUCKET_SCHEMA.empty_table()
    nodes = pa.concat_tables([n for _, n in loaded]) if loaded else steps.NODE_SCHEMA.empty_table()
    steps.shuffle_rows(as_path(work), task, buckets, nodes, partitions)
    dumps: dict[str, int] = {}
    for code in nodes.column("dump").to_pylist():
        name = steps.dump_name(code) or ""
        dumps[name] = dumps.get(name, 0) + 1
    return {"documents": nodes.num_rows, "dumps": dict(sorted(dumps.items()))}


def _indexed_part(part: int, prefix: str) -> tuple[pa.Table, pa.Table]:
    """One stored part's bucket rows (with the id band derived) and node rows, renumbered as `part`."""
    buckets, nodes = read_table(f"{prefix}-buckets.parquet"), read_table(f"{prefix}-nodes.parquet")
    if "wet" not in nodes.schema.names:  # an index written before the column (indexed documents are kept first anyway)
        nodes = nodes.append_column("wet", pa.array(np.zeros(nodes.num_rows, bool)))
    nodes = nodes.select(steps.NODE_SCHEMA.names).cast(steps.NODE_SCHEMA)
    buckets = buckets.filter(pa.array(buckets.column("band").to_numpy() != steps.ID_BAND))
    buckets = pa.concat_tables([buckets.cast(steps.BUCKET_SCHEMA), steps.id_bucket_rows(nodes.column("id").to_pylist(), nodes.column("node").to_numpy(), nodes.column("dump").to_numpy())])
    buckets = buckets.set_column(buckets.schema.get_field_index("node"), "node", pa.array(_rebase(buckets.column("node").to_numpy(), part)))
    nodes = nodes.set_column(nodes.schema.get_field_index("node"), "node", pa.array(_rebase(nodes.column("node").to_numpy(), part)))
    nodes = nodes.set_column(nodes.schema.get_field_index("indexed"), "indexed", pa.array(np.ones(nodes.num_rows, bool)))
    return buckets, nodes


def save_part(config: DedupConfig, work: str, part: int, prefix: str) -> dict[str, Any]:
    """This run's kept documents of input part `part`, renumbered to their rows in its output part."""
    work_dir = as_path(work)
    removed = np.sort(read_table(steps.removed_path(work_dir, part), schema=steps.REMOVED_SCHEMA).column("node").to_numpy() & np.int64(0xFFFFFFFF))
    stored = {}
    for kind in ("buckets", "nodes"):
        table = read_table(work_dir / steps.PART_ROWS / f"part-{part:05d}-{kind}.parquet")
        rows = table.column("node").to_numpy() & np.int64(0xFFFFFFFF)
        kept = ~np.isin(rows, removed)
        table = table.filter(pa.array(kept))
        output_rows = rows[kept] - np.searchsorted(removed, rows[kept])  # rows shift up past removed ones
        table = table.set_column(table.schema.get_field_index("node"), "node", pa.array((np.int64(part) << np.int64(32)) | output_rows))
        write_table(as_path(f"{prefix}-{kind}.parquet"), table)
        stored[kind] = table.num_rows
    return stored


def append_run(index_dir: Any, output: Any, parts: list[str], run_dir: str, text_format: int) -> None:
    """Record this run's kept parts, stored under `run_dir`, as the index's last run (the last
    run, run again, replaces its own entry; any other is refused: the manifest is never reordered),
    and the text format its runs share (text_format_of)."""
    runs = load_manifest(index_dir)
    at = run_position(runs, output)
    refuse_rerun(index_dir, runs, at)
    runs = runs[:at] if at is not None else runs
    runs.append({"output": resolved(output), "parts": parts, "dir": run_dir, "text_format": text_format})
    manifest = {"text_format": text_format, "index": resolved(index_dir), "runs": runs}  # index: where it was written (relocation.py)
    atomic_write_text(manifest_path(index_dir), json.dumps(manifest, indent=1))
