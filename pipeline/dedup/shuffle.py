"""Hash-partitioned shuffle files: how dedup's steps (and the tokenizer's word counts) hand rows to
each other without one process holding them all.

A sending task writes one file per step, `<step>/<task>.shuffle`, holding its rows for every
receiving partition: a header (MAGIC, the partition count, then partitions + 1 byte offsets) and
each partition's rows as one Arrow IPC stream (zstd), back to back in partition order. The task
of partition N reads, from every sender's file, the header up to its two offsets and then its own
byte range: two reads (an object store: two ranged GETs; three past 8,190 partitions), never the
whole file; a task that runs a block of consecutive partitions (`block_io`) reads their offsets and
bytes once a sender for the block, and sends one file a step for the block. A step thus leaves one file per
sending task, where one file per (sender, receiver) pair made senders x partitions files (at
10^4 parts and 10^3 partitions, 10^7 files per step: more than a file system or a bucket listing
takes in stride). Files are written under a temporary name and renamed; the runner writes a
task's marker after them, so a killed sender leaves no file a receiver would read.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, atomic_path, is_remote, list_file_sizes, read_ranges

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
    no file when there are no rows. Rows keep their order within a partition. Inside a block
    (`block_io`), into the block's local spool: the block sends one file a step when it ends."""
    if not table.num_rows:
        return
    block = _BLOCK.get()
    target = block.outgoing(step_dir, task) if block is not None else shuffle_path(step_dir, task)
    order = np.argsort(partition, kind="stable")
    bounds = np.searchsorted(partition[order], np.arange(partitions + 1))
    table = table.take(pa.array(order))
    sizes = np.zeros(partitions, np.uint64)
    header = _HEAD.size + 8 * (partitions + 1)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
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


def _offsets(path: AnyPath, size: int, first: int, count: int) -> np.ndarray:
    """The count + 1 byte offsets that bound partitions first..first+count-1 in one sender's file
    (one read while they lie near its start, else two), checked against its header and size."""
    entries = (_HEAD.size + 8 * first, 8 * (count + 1))
    if sum(entries) <= _ONE_READ:
        (block,) = read_ranges(path, [(0, sum(entries))])
        head, bounds = block[: _HEAD.size], block[entries[0] :]
    else:
        head, bounds = read_ranges(path, [(0, _HEAD.size), entries])
    magic, partitions = _HEAD.unpack(head) if len(head) == _HEAD.size else (b"", 0)
    if magic != MAGIC or (len(bounds) != entries[1] and first + count <= partitions):
        raise ValueError(f"{path}: not a shuffle file (or cut short: {size} bytes)")
    if first + count > partitions:
        last = f"partition {first}" if count == 1 else f"partitions {first}-{first + count - 1}"
        raise ValueError(f"{path}: written for {partitions} partitions, read as {last}")
    offsets = np.frombuffer(bounds, dtype="<u8").astype(np.int64)
    if offsets[0] < _HEAD.size + 8 * (partitions + 1) or offsets[-1] > size or np.any(np.diff(offsets) < 0):
        bad = first + int(np.argmax((offsets[1:] > size) | (np.diff(offsets) < 0))) if count > 1 else first
        start, end = offsets[bad - first], offsets[bad - first + 1]
        where = "are out of order" if end < start else f"lie outside its {size} bytes"
        raise ValueError(f"{path}: partition {bad}'s bytes {start}-{end} {where}")
    return offsets


def _streams(path: AnyPath, payload: bytes | pa.Buffer, partition: int, schema: pa.Schema) -> Iterator[pa.Table]:
    """The tables of one partition's bytes: one Arrow IPC stream a sending task, several back to
    back in a block's file (one per task of the block, in name order)."""
    source = pa.BufferReader(payload)
    while source.tell() < source.size():
        table = pa.ipc.open_stream(source).read_all()
        if table.schema.names != schema.names:
            raise ValueError(f"{path}: partition {partition} has columns {table.schema.names}, expected {schema.names}")
        yield table.cast(schema)


def _joined(tables: list[pa.Table]) -> pa.Table:
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _sender_streams(path: AnyPath, size: int, partition: int, schema: pa.Schema) -> Iterator[pa.Table]:
    """One sender file's tables for `partition` (one per sending task): two reads."""
    start, end = _offsets(path, size, partition, 1)
    if end > start:
        (payload,) = read_ranges(path, [(int(start), int(end - start))])
        yield from _streams(path, payload, partition, schema)


def sender_rows(path: AnyPath, size: int, partition: int, schema: pa.Schema) -> pa.Table | None:
    """One sender's rows for `partition`; None when it sent none."""
    tables = list(_sender_streams(path, size, partition, schema))
    return _joined(tables) if tables else None


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
        table = _joined(list(_streams(path, whole.slice(offsets[p], offsets[p + 1] - offsets[p]), p, schema)))
        tables.append(table)
        rows.append(np.full(table.num_rows, p, np.int64))
    if not tables:
        return schema.empty_table(), np.zeros(0, np.int64)
    return pa.concat_tables(tables), np.concatenate(rows)


@dataclass
class _Received:
    """One sender's bytes for a block of partitions: the file they are read from (the sender's own,
    or a local spool of them) and the block's count + 1 offsets in it."""

    sender: AnyPath
    source: AnyPath
    offsets: np.ndarray


@dataclass
class _Block:
    first: int
    count: int
    spool: Path
    received: dict[str, list[_Received]] = field(default_factory=dict)
    sent: dict[str, tuple[AnyPath, list[tuple[str, Path]]]] = field(default_factory=dict)

    def senders(self, step_dir: AnyPath) -> list[_Received]:
        """Every sender's bytes for this block of `step_dir`, fetched at its first read: two reads
        a sender (its offsets, then the block's bytes, back to back), copied to the local spool
        when the sender is remote."""
        key = str(step_dir)
        if key not in self.received:
            received = []
            for number, (path, size) in enumerate(sender_files(step_dir)):
                offsets = _offsets(path, size, self.first, self.count)
                if is_remote(path) and offsets[-1] > offsets[0]:
                    spooled = self.spool / f"in-{len(self.received):04d}-{number:08d}"
                    (payload,) = read_ranges(path, [(int(offsets[0]), int(offsets[-1] - offsets[0]))])
                    if len(payload) != offsets[-1] - offsets[0]:
                        raise ValueError(f"{path}: partitions {self.first}-{self.first + self.count - 1} cut short ({size} bytes listed)")
                    spooled.write_bytes(payload)
                    received.append(_Received(path, spooled, offsets - offsets[0]))
                else:
                    received.append(_Received(path, path, offsets))
            self.received[key] = received
        return self.received[key]

    def outgoing(self, step_dir: AnyPath, task: str) -> Path:
        """Where a task of the block writes its shuffle file for `step_dir`: the local spool."""
        _, written = self.sent.setdefault(str(step_dir), (step_dir, []))
        if any(name == task for name, _ in written):
            raise ValueError(f"{step_dir}: {task} written twice in one block")
        path = self.spool / f"out-{list(self.sent).index(str(step_dir)):04d}-{len(written):08d}{SUFFIX}"
        written.append((task, path))
        return path

    def send(self) -> None:
        """One file a step for the whole block, named by its first sending task (`<task>~<n>`, so
        that it keeps that task's place in the step's name order): for each receiving partition,
        the block's tasks' bytes back to back in name order, as they would be read from the tasks'
        own files. A single task's file keeps its own name, as outside a block."""
        for step_dir, written in self.sent.values():
            written.sort()
            name = written[0][0] if len(written) == 1 else f"{written[0][0]}~{len(written)}"
            with atomic_path(shuffle_path(step_dir, name)) as tmp:
                _concatenate([path for _, path in written], tmp)


def _concatenate(files: list[Path], target: Path) -> None:
    """Shuffle files of one step, joined partition by partition into one (a partition's streams
    back to back, in `files`' order): the output offsets are known from the headers, so the files
    are copied one at a time, each front to back, into their places; memory holds one partition's
    bytes of one file at a time, and one file is open besides the output (verify's chunks make
    thousands of files a block)."""
    heads = []
    for path in files:
        with open(path, "rb") as f:
            partitions = _HEAD.unpack(f.read(_HEAD.size))[1]
            heads.append(np.frombuffer(f.read(8 * (partitions + 1)), dtype="<u8").astype(np.int64))
    if len({len(h) for h in heads}) != 1:
        raise ValueError(f"{target}: a block's tasks wrote for different partition counts ({sorted({len(h) - 1 for h in heads})})")
    partitions = len(heads[0]) - 1
    sizes = np.sum([np.diff(h) for h in heads], axis=0)
    offsets = _HEAD.size + 8 * (partitions + 1) + np.concatenate([[0], np.cumsum(sizes)])
    cursor = offsets[:-1].copy()  # where each partition's next stream goes
    with open(target, "wb") as out:
        out.write(_HEAD.pack(MAGIC, partitions))
        out.write(offsets.astype("<u8").tobytes())
        for path, h in zip(files, heads):
            with open(path, "rb") as f:
                f.seek(int(h[0]))
                for p in np.flatnonzero(np.diff(h)):
                    data = f.read(int(h[p + 1] - h[p]))
                    if len(data) != h[p + 1] - h[p]:
                        raise ValueError(f"{path}: partition {p}'s bytes cut short in the block's spool")
                    out.seek(int(cursor[p]))
                    out.write(data)
                    cursor[p] += len(data)
            path.unlink()  # the spool holds each byte once: its disk is the block's, not twice


def _sweep_spools(root: Path) -> None:
    """Remove the spools of blocks whose process is gone (a worker killed mid-block leaves its
    temporary folder): named by process id, and a live process's are left alone."""
    for folder in root.glob(f"{_SPOOL_PREFIX}*"):
        try:
            pid = int(folder.name[len(_SPOOL_PREFIX) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


_BLOCK: ContextVar[_Block | None] = ContextVar("crawlmill_shuffle_block", default=None)
_SPOOL_PREFIX = "crawlmill-block-"


@contextmanager
def block_io(first: int, count: int) -> Iterator[None]:
    """The shuffles of a task that runs partitions first..first+count-1 one after another.

    Reads: each sender's offsets and bytes for the whole block are read once (two reads a sender
    and step, where a read per partition costs two; on an object store, `count` times fewer GETs,
    and one listing of the step a block), from an object store into a local spool; each partition
    is then read from there, so a task still holds one partition's rows of one sender at a time.
    Local senders are read in place.

    Writes: what the block's partitions send goes to the local spool, and when the block ends
    (without an error) one file a step is written for all of them (`_Block.send`): the next step's
    receivers read `count` times fewer senders. A block that fails writes nothing."""
    root = Path(tempfile.gettempdir())
    _sweep_spools(root)
    with tempfile.TemporaryDirectory(prefix=f"{_SPOOL_PREFIX}{os.getpid()}-", dir=root) as spool:
        block = _Block(first, count, Path(spool))
        token = _BLOCK.set(block)
        try:
            yield
        finally:
            _BLOCK.reset(token)
        block.send()


def partition_tables(step_dir: AnyPath, partition: int, schema: pa.Schema) -> Iterator[pa.Table]:
    """The rows each sending task of a step sent to `partition`, one table per task (in
    sender_files' order; a block's file holds its tasks' in name order): a receiver that folds them
    in one at a time holds one task's rows, not all. Inside `block_io`, a partition of its block is
    read from the block's bytes."""
    block = _BLOCK.get()
    if block is None or not block.first <= partition < block.first + block.count:
        for path, size in sender_files(step_dir):
            yield from _sender_streams(path, size, partition, schema)
        return
    at = partition - block.first
    for received in block.senders(step_dir):
        start, end = int(received.offsets[at]), int(received.offsets[at + 1])
        if end > start:
            (payload,) = read_ranges(received.source, [(start, end - start)])
            yield from _streams(received.sender, payload, partition, schema)


def read_partition(step_dir: AnyPath, partition: int, schema: pa.Schema) -> pa.Table:
    tables = list(partition_tables(step_dir, partition, schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()
