"""Hash-partitioned Parquet files: how dedup's steps hand rows to each other without one process
holding them all.

A map task writes its rows split by partition into `<step>/p-NNNNN/<task>.parquet`; the reduce
task of partition N reads that folder. Files are written under a temporary name and renamed; the
runner writes a task's marker after them.
"""

from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, atomic_path, list_files, read_table

from ..parts import PARQUET_OPTIONS
from .shingles import mix64


def node_partition(nodes: np.ndarray, partitions: int) -> np.ndarray:
    return (mix64(nodes.astype(np.uint64)) % np.uint64(partitions)).astype(np.int64)


def write_table(path: AnyPath, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def write_partitioned(step_dir: AnyPath, task: str, table: pa.Table, partition: np.ndarray, partitions: int) -> None:
    """Rows of `table` to `step_dir/p-NNNNN/<task>.parquet` by `partition` (empty partitions skipped)."""
    if not table.num_rows:
        return
    order = np.argsort(partition, kind="stable")
    sorted_parts = partition[order]
    bounds = np.searchsorted(sorted_parts, np.arange(partitions + 1))
    table = table.take(pa.array(order))
    for p in range(partitions):
        if bounds[p + 1] > bounds[p]:
            write_table(step_dir / f"p-{p:05d}" / f"{task}.parquet", table.slice(bounds[p], bounds[p + 1] - bounds[p]))


def partition_files(step_dir: AnyPath, partition: int) -> list[AnyPath]:
    """The finished files one partition received, in a deterministic order."""
    return list_files(step_dir / f"p-{partition:05d}", "*.parquet")


def read_partition(step_dir: AnyPath, partition: int, schema: pa.Schema) -> pa.Table:
    tables = [read_table(f, schema=schema) for f in partition_files(step_dir, partition)]
    return pa.concat_tables(tables) if tables else schema.empty_table()
