"""The dedup index (`--index DIR`): earlier runs' kept documents, ready for the next run.

A new dump is deduplicated against every earlier dump without recomputing their signatures: the
index keeps each earlier run's bucket rows and node attributes, and a later run loads them as
documents that are never removed (an earlier run already published them). Only earlier
documents that end up in a candidate pair are read again, from the earlier output parts, to
verify the pair; those output folders must stay where they were.

    INDEX/manifest.json                         {"runs": [{"output": DIR, "parts": [PART, ...]}]}
    INDEX/run-NNNN/part-MMMMM-buckets.parquet   bucket rows of one output part's documents
    INDEX/run-NNNN/part-MMMMM-nodes.parquet     their node attributes

Node ids in the index are `output part << 32 | row in that output part`. The id band's rows (a
later document with the same id is the same page) are not stored: a later run derives them from
the nodes' ids, so an index written before that band existed works the same.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from crawlmill.files import as_path, atomic_write_text, read_table, resolved

from . import steps
from .config import DedupConfig
from .shuffle import read_partition, write_table


def load_manifest(index_dir: Any, excluding_output: Any = None) -> list[dict[str, Any]]:
    """Earlier runs in the index (a rerun of `excluding_output` does not see itself)."""
    path = as_path(index_dir) / "manifest.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    return [r for r in runs if excluding_output is None or r["output"] != resolved(excluding_output)]


def indexed_parts(index_dir: Any, runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(stored rows prefix, output part path) of every earlier kept part, in index order."""
    return [(str(as_path(index_dir) / f"run-{k:04d}" / f"part-{i:05d}"), part) for k, run in enumerate(runs) for i, part in enumerate(run["parts"])]


def _rebase(nodes: np.ndarray, part: int) -> np.ndarray:
    return (np.int64(part) << np.int64(32)) | (nodes & np.int64(0xFFFFFFFF))


def load_indexed_part(config: DedupConfig, work: str, part: int, prefix: str, partitions: int) -> dict[str, Any]:
    """An earlier run's kept part as this run's input part `part`, marked indexed, shuffled like map's output."""
    buckets, nodes = read_table(f"{prefix}-buckets.parquet"), read_table(f"{prefix}-nodes.parquet")
    if "wet" not in nodes.schema.names:  # an index written before the column (indexed documents are kept first anyway)
        nodes = nodes.append_column("wet", pa.array(np.zeros(nodes.num_rows, bool)))
    nodes = nodes.select(steps.NODE_SCHEMA.names).cast(steps.NODE_SCHEMA)
    buckets = buckets.filter(pa.array(buckets.column("band").to_numpy() != steps.ID_BAND))
    buckets = pa.concat_tables([buckets.cast(steps.BUCKET_SCHEMA), steps.id_bucket_rows(nodes.column("id").to_pylist(), nodes.column("node").to_numpy(), nodes.column("dump").to_numpy())])
    buckets = buckets.set_column(buckets.schema.get_field_index("node"), "node", pa.array(_rebase(buckets.column("node").to_numpy(), part)))
    nodes = nodes.set_column(nodes.schema.get_field_index("node"), "node", pa.array(_rebase(nodes.column("node").to_numpy(), part)))
    nodes = nodes.set_column(nodes.schema.get_field_index("indexed"), "indexed", pa.array(np.ones(nodes.num_rows, bool)))
    steps.shuffle_rows(as_path(work), f"index-{part:05d}", buckets, nodes, partitions)
    dumps: dict[str, int] = {}
    for code in nodes.column("dump").to_pylist():
        name = steps.dump_name(code) or ""
        dumps[name] = dumps.get(name, 0) + 1
    return {"documents": nodes.num_rows, "dumps": dict(sorted(dumps.items()))}


def save_part(config: DedupConfig, work: str, part: int, prefix: str) -> dict[str, Any]:
    """This run's kept documents of input part `part`, renumbered to their rows in its output part."""
    work_dir = as_path(work)
    removed = np.sort(read_partition(work_dir / steps.REMOVED, part, steps.REMOVED_SCHEMA).column("node").to_numpy() & np.int64(0xFFFFFFFF))
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


def append_run(index_dir: Any, output: Any, parts: list[str]) -> None:
    runs = load_manifest(index_dir, excluding_output=output)
    runs.append({"output": resolved(output), "parts": parts})
    atomic_write_text(as_path(index_dir) / "manifest.json", json.dumps({"runs": runs}, indent=1))
