"""Hash-partitioned shuffle files: how dedup's steps (and the tokenizer's word counts) hand rows to
each other without one process holding them all.

A sending task writes one file per step, `<step>/<task>.shuffle`, holding its rows for every
receiving partition: a header (MAGIC, the partition count, then partitions + 1 byte offsets) and
each partition's rows as one Arrow IPC stream (zstd), back to back in partition order. The task
of partition N reads, from every sender's file, the header up to its two offsets and then its own
byte range: two reads (an object store: two ranged GETs; three past 8,190 partitions), never the
whole file. A step thus leaves one file per
sending task, where one file per (sender, receiver) pair made senders x partitions files (at
10^4 parts and 10^3 partitions, 10^7 files per step: more than a file system or a bucket listing
takes in stride). Files are written under a temporary name and renamed; the runner writes a
task's marker after them, so a killed sender leaves no file a receiver would read.
"""

from __future__ import annotations

import struct
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, atomic_path, list_file_sizes, read_ranges

from ..parts import PARQUET_OPTIONS
from .shingles import mix64

MAGIC = b"CMSHUF1\n"
SUFFIX = ".shuffle"
_HEAD = struct.Struct("<8sQ")  # MAGIC, partitions
_IPC = pa.ipc.IpcWriteOptions(compression="zstd")
# A receiver reads the header and its offsets in one range while they lie this close (partitions
# below 8,190): an object store's read of a partition is then two GETs, not three.
_ONE_READ = 64 << 10


def node_partition(nodes: np.ndarray, partitions: int) -> np.ndarray:
    return (mix64(nodes.astype(np.uint64)) % np.uint64(partitions)).astype(np.int64)


def write_table(path: AnyPath, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def shuffle_path(step_dir: AnyPath, task: str) -> AnyPath:
    return step_dir / f"{task}{SUFFIX}"


def _ipc_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    return sink.getvalue()


def write_partitioned(step_dir: AnyPath, task: str, table: pa.Table, partition: np.ndarray, partitions: int) -> None:
    """Rows of `table` by `partition` (a receiving partition per row) into `step_dir/<task>.shuffle`;
    no file when there are no rows. Rows keep their order within a partition."""
    if not table.num_rows:
        return
    order = np.argsort(partition, kind="stable")
    bounds = np.searchsorted(partition[order], np.arange(partitions + 1))
    table = table.take(pa.array(order))
    sizes = np.zeros(partitions, np.uint64)
    header = _HEAD.size + 8 * (partitions + 1)
    with atomic_path(shuffle_path(step_dir, task)) as tmp, open(tmp, "wb") as f:
        f.seek(header)  # the offsets are written last, once the payloads' sizes are known
        for p in np.flatnonzero(np.diff(bounds)):  # the partitions with rows only: a sender may have 10^5 partitions
            payload = _ipc_bytes(table.slice(bounds[p], bounds[p + 1] - bounds[p]))
            f.write(payload)
            sizes[p] = payload.size
        offsets = np.uint64(header) + np.concatenate([np.zeros(1, np.uint64), np.cumsum(sizes, dtype=np.uint64)])
        f.seek(0)
        f.write(_HEAD.pack(MAGIC, partitions))
        f.write(offsets.astype("<u8").tobytes())


def sender_files(step_dir: AnyPath) -> list[tuple[AnyPath, int]]:
    """(file, size) of every finished sender of a step, in name order: receivers read them in this
    order, so a partition's rows come in the same order however the tasks ran."""
    return list_file_sizes(step_dir, f"*{SUFFIX}")


def sender_rows(path: AnyPath, size: int, partition: int, schema: pa.Schema) -> pa.Table | None:
    """One sender's rows for `partition`; None when it sent none."""
    entry = _HEAD.size + 8 * partition
    if entry + 16 <= _ONE_READ:
        (block,) = read_ranges(path, [(0, entry + 16)])
        head, bounds = block[: _HEAD.size], block[entry:]
    else:
        head, bounds = read_ranges(path, [(0, _HEAD.size), (entry, 16)])
    magic, partitions = _HEAD.unpack(head) if len(head) == _HEAD.size else (b"", 0)
    if magic != MAGIC or len(bounds) != 16:
        raise ValueError(f"{path}: not a shuffle file (or cut short: {size} bytes)")
    if partition >= partitions:
        raise ValueError(f"{path}: written for {partitions} partitions, read as partition {partition}")
    start, end = struct.unpack("<QQ", bounds)
    if not _HEAD.size + 8 * (partitions + 1) <= start <= end <= size:
        raise ValueError(f"{path}: partition {partition}'s bytes {start}-{end} lie outside its {size} bytes")
    if start == end:
        return None
    (payload,) = read_ranges(path, [(start, end - start)])
    table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    if table.schema.names != schema.names:
        raise ValueError(f"{path}: partition {partition} has columns {table.schema.names}, expected {schema.names}")
    return table.cast(schema)


def sender_table(path: AnyPath, size: int, schema: pa.Schema, partitions: int) -> tuple[pa.Table, np.ndarray]:
    """Every row one sender sent, in partition order, with each row's partition: the whole file in
    one read (for a step that combines small senders before the partitions read them). A file
    written for another partition count is refused: its rows would go to the wrong receivers."""
    (data,) = read_ranges(path, [(0, size)]) if size else (b"",)
    magic, written = _HEAD.unpack(data[: _HEAD.size]) if len(data) >= _HEAD.size else (b"", 0)
    end = _HEAD.size + 8 * (written + 1)
    if magic != MAGIC or len(data) < end:
        raise ValueError(f"{path}: not a shuffle file (or cut short: {size} bytes)")
    if written != partitions:
        raise ValueError(f"{path}: written for {written} partitions, read as one of {partitions}")
    offsets = np.frombuffer(data[_HEAD.size : end], dtype="<u8").astype(np.int64)
    if offsets[0] != end or offsets[-1] != len(data) or np.any(np.diff(offsets) < 0):
        raise ValueError(f"{path}: its offsets do not cut its {len(data)} bytes into {written} partitions")
    tables, rows, whole = [], [], pa.py_buffer(data)  # slices of one buffer: no copies
    for p in np.flatnonzero(np.diff(offsets)):
        table = pa.ipc.open_stream(whole.slice(offsets[p], offsets[p + 1] - offsets[p])).read_all()
        if table.schema.names != schema.names:
            raise ValueError(f"{path}: partition {p} has columns {table.schema.names}, expected {schema.names}")
        tables.append(table.cast(schema))
        rows.append(np.full(table.num_rows, p, np.int64))
    if not tables:
        return schema.empty_table(), np.zeros(0, np.int64)
    return pa.concat_tables(tables), np.concatenate(rows)


def partition_tables(step_dir: AnyPath, partition: int, schema: pa.Schema) -> Iterator[pa.Table]:
    """The rows each sender of a step sent to `partition`, one table per sender (in sender_files'
    order): a receiver that folds them in one at a time holds one sender's rows, not all."""
    for path, size in sender_files(step_dir):
        table = sender_rows(path, size, partition, schema)
        if table is not None:
            yield table


def read_partition(step_dir: AnyPath, partition: int, schema: pa.Schema) -> pa.Table:
    tables = list(partition_tables(step_dir, partition, schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()
