"""Shuffle files (pipeline/dedup/shuffle.py): one file per sending task, every partition's rows
read back exactly, in sender order, from a local folder and from a real S3 server, a partition at a
time or a block of partitions at once (two reads a sender for the block, one file sent for the
block's tasks); damaged or mismatched files refused with their name."""

from __future__ import annotations

import contextlib
import numpy as np
import pyarrow as pa
import pytest

from crawlmill.pipeline.dedup import shuffle
from crawlmill.pipeline.dedup.shuffle import block_io, partition_tables, read_partition, sender_files, sender_table, write_partitioned

SCHEMA = pa.schema([("node", pa.int64()), ("word", pa.string())])


def _table(rows: int, seed: int) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    nodes = rng.integers(0, 1 << 40, rows)
    return pa.table({"node": nodes, "word": [f"w{seed}-{i}" for i in range(rows)]}, schema=SCHEMA), nodes


def _expected(senders: list[tuple[pa.Table, np.ndarray]], partition: int, partitions: int) -> list[dict]:
    rows = []
    for table, nodes in senders:  # in name order (the writers below are named in this order)
        rows += [r for r, n in zip(table.to_pylist(), nodes) if n % partitions == partition]
    return rows


def _write(step, senders, partitions: int) -> None:
    for i, (table, nodes) in reversed(list(enumerate(senders))):  # written out of order: read in name order
        write_partitioned(step, f"from-{i:05d}", table, nodes % partitions, partitions)


@pytest.mark.parametrize("partitions", [1, 7, 1000, 10_000])  # past 8,190: header and offsets read apart
def test_every_partition_reads_back_its_rows_in_sender_order_from_one_file_per_sender(tmp_path, partitions):
    senders = [_table(500, seed) for seed in range(3)]
    _write(tmp_path / "step", senders, partitions)
    assert [path.name for path, _ in sender_files(tmp_path / "step")] == ["from-00000.shuffle", "from-00001.shuffle", "from-00002.shuffle"]
    assert sorted(p.name for p in (tmp_path / "step").iterdir()) == ["from-00000.shuffle", "from-00001.shuffle", "from-00002.shuffle"]
    total = 0
    # all of them, or at 10,000 every partition with rows and the two either side of the 8,190 line
    with_rows = {int(n % partitions) for _, nodes in senders for n in nodes}
    for p in range(partitions) if partitions <= 1000 else sorted(with_rows | {8190, 8191}):
        got = read_partition(tmp_path / "step", p, SCHEMA)
        assert got.schema == SCHEMA
        assert got.to_pylist() == _expected(senders, p, partitions)
        total += got.num_rows
    assert total == 1500


def test_a_partition_no_sender_wrote_to_is_empty_and_an_empty_table_writes_no_file(tmp_path):
    table, _ = _table(4, 0)
    write_partitioned(tmp_path / "step", "from-00000", table, np.array([3, 3, 0, 3]), 5)
    write_partitioned(tmp_path / "step", "from-00001", SCHEMA.empty_table(), np.array([], np.int64), 5)
    assert len(sender_files(tmp_path / "step")) == 1
    assert read_partition(tmp_path / "step", 1, SCHEMA).num_rows == 0
    assert list(partition_tables(tmp_path / "step", 1, SCHEMA)) == []
    assert read_partition(tmp_path / "step", 3, SCHEMA).column("word").to_pylist() == ["w0-0", "w0-1", "w0-3"]
    assert read_partition(tmp_path / "absent", 0, SCHEMA).num_rows == 0


def test_a_damaged_file_or_another_partition_count_is_refused_with_the_file_named(tmp_path):
    table, nodes = _table(50, 0)
    write_partitioned(tmp_path / "step", "from-00000", table, nodes % 4, 4)
    path = tmp_path / "step" / "from-00000.shuffle"
    with pytest.raises(ValueError, match=r"from-00000\.shuffle: written for 4 partitions, read as partition 4"):
        read_partition(tmp_path / "step", 4, SCHEMA)
    with pytest.raises(ValueError, match="expected"):
        read_partition(tmp_path / "step", 0, pa.schema([("other", pa.int64()), ("word", pa.string())]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])  # cut short: the last partition's range lies past the end
    with pytest.raises(ValueError, match=r"from-00000\.shuffle: partition 3's bytes .* outside"):
        read_partition(tmp_path / "step", 3, SCHEMA)
    path.write_bytes(b"PAR1" + data[4:])
    with pytest.raises(ValueError, match=r"from-00000\.shuffle: not a shuffle file"):
        read_partition(tmp_path / "step", 0, SCHEMA)



def test_a_whole_sender_reads_back_every_row_with_its_partition_and_damage_is_refused(tmp_path):
    table, nodes = _table(300, 5)
    write_partitioned(tmp_path / "step", "from-00000", table, nodes % 7, 7)
    (path, size), = sender_files(tmp_path / "step")
    rows, partition = sender_table(path, size, SCHEMA, 7)
    with pytest.raises(ValueError, match=r"from-00000\.shuffle: written for 7 partitions, read as one of 8"):
        sender_table(path, size, SCHEMA, 8)
    assert partition.tolist() == sorted(partition.tolist())  # partition order
    expected = [row for p in range(7) for row in _expected([(table, nodes)], p, 7)]
    assert rows.to_pylist() == expected and partition.tolist() == [n % 7 for n in (r["node"] for r in expected)]
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(ValueError, match=r"from-00000\.shuffle: its offsets do not cut its"):
        sender_table(path, size - 10, SCHEMA, 7)
    path.write_bytes(b"PAR1" + data[4:])
    with pytest.raises(ValueError, match=r"from-00000\.shuffle: not a shuffle file"):
        sender_table(path, size, SCHEMA, 7)

def test_a_shuffle_on_a_real_s3_server_reads_back_like_a_local_one(tmp_path):
    pytest.importorskip("s3fs")
    from tests.s3server import moto_s3

    from crawlmill.files import as_path

    senders = [_table(300, seed) for seed in range(2)]
    with moto_s3("shuffle") as (fs, _):
        step = as_path("s3://shuffle/work/step")
        _write(step, senders, 9)
        assert sorted(fs.ls("shuffle/work/step")) == ["shuffle/work/step/from-00000.shuffle", "shuffle/work/step/from-00001.shuffle"]
        for p in range(9):
            assert read_partition(step, p, SCHEMA).to_pylist() == _expected(senders, p, 9)
        wide = as_path("s3://shuffle/work/wide")  # past 8,190 partitions: header and offsets are two ranges
        _write(wide, senders, 9000)
        for p in sorted({int(n % 9000) for n in senders[0][1][:4]} | {8191}):
            assert read_partition(wide, p, SCHEMA).to_pylist() == _expected(senders, p, 9000)


def _counting_reads(monkeypatch) -> list[str]:
    """The path of every read_ranges call the shuffle module makes (a GET per range on S3)."""
    calls, read = [], shuffle.read_ranges

    def counted(path, ranges):  # noqa: ANN001, ANN202
        calls.extend([str(path)] * len(ranges))
        return read(path, ranges)

    monkeypatch.setattr(shuffle, "read_ranges", counted)
    return calls


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_block_of_partitions_reads_each_sender_twice_and_gives_every_partition_its_rows(tmp_path, monkeypatch, where):
    senders, partitions = [_table(400, seed) for seed in range(3)], 10
    with contextlib.ExitStack() as stack:
        if where == "s3":
            pytest.importorskip("s3fs")
            from tests.s3server import moto_s3

            from crawlmill.files import as_path

            stack.enter_context(moto_s3("blocks"))
            step = as_path("s3://blocks/work/step")
        else:
            step = tmp_path / "step"
        _write(step, senders, partitions)
        calls = _counting_reads(monkeypatch)
        for first, count in [(0, 4), (4, 4), (8, 2)]:
            with block_io(first, count):
                for p in range(first, first + count):
                    assert read_partition(step, p, SCHEMA).to_pylist() == _expected(senders, p, partitions)
                outside = (first + count) % partitions  # a partition outside the block: read on its own
                assert read_partition(step, outside, SCHEMA).to_pylist() == _expected(senders, outside, partitions)
        from_senders = [c for c in calls if "shuffle" in c and "crawlmill-block-" not in c]
        if where == "s3":  # offsets + block bytes per sender and block; 2 + 2 per sender for the partition outside
            assert len(from_senders) == 3 * (3 * 2 + 3 * 2)
        else:  # local senders are read in place: offsets per block, then each partition's bytes
            assert len([c for c in calls if "crawlmill-block-" in c]) == 0
        calls.clear()
        for p in range(partitions):  # a partition a task: two reads a sender each
            read_partition(step, p, SCHEMA)
        assert len(calls) == partitions * 3 * 2


def test_a_block_past_the_written_partitions_or_a_damaged_sender_is_refused_with_the_file_named(tmp_path):
    table, nodes = _table(60, 1)
    write_partitioned(tmp_path / "step", "from-00000", table, nodes % 6, 6)
    path = tmp_path / "step" / "from-00000.shuffle"
    with block_io(4, 3), pytest.raises(ValueError, match=r"from-00000\.shuffle: written for 6 partitions, read as partitions 4-6"):
        read_partition(tmp_path / "step", 4, SCHEMA)
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # the last partition's bytes run past the end
    with block_io(3, 3), pytest.raises(ValueError, match=r"from-00000\.shuffle: partition 5's bytes .* outside"):
        read_partition(tmp_path / "step", 3, SCHEMA)
    path.write_bytes(b"PAR1" + data[4:])
    with block_io(0, 2), pytest.raises(ValueError, match=r"from-00000\.shuffle: not a shuffle file"):
        read_partition(tmp_path / "step", 0, SCHEMA)


def test_a_block_sends_one_file_a_step_whose_partitions_read_back_as_its_tasks_files_would(tmp_path):
    """Tasks of a block write into it (several a partition, as verify's chunks); when the block
    ends, one file a step, named by its first task, holds them: every partition reads back the
    same rows in the same order as from the tasks' own files, one table per task."""
    senders = {f"from-{p:05d}-{c:05d}": _table(200 + 37 * p + c, 10 * p + c) for p in range(3) for c in range(2)}
    senders["from-00001-00001"] = (SCHEMA.empty_table(), np.zeros(0, np.int64))  # sends nothing
    for task, (table, nodes) in reversed(senders.items()):  # the block's own files, for comparison
        write_partitioned(tmp_path / "apart", task, table, nodes % 9, 9)
    with block_io(0, 3):
        for task, (table, nodes) in senders.items():
            write_partitioned(tmp_path / "block" / "to", task, table, nodes % 9, 9)
            write_partitioned(tmp_path / "block" / "other", f"x-{task}", table.slice(0, 5), nodes[:5] % 2, 2)
        assert not (tmp_path / "block").exists()  # nothing is sent before the block ends
    assert [p.name for p, _ in sender_files(tmp_path / "block" / "to")] == ["from-00000-00000~5.shuffle"]
    assert [p.name for p, _ in sender_files(tmp_path / "block" / "other")] == ["x-from-00000-00000~5.shuffle"]
    for p in range(9):
        apart = list(partition_tables(tmp_path / "apart", p, SCHEMA))
        joined = list(partition_tables(tmp_path / "block" / "to", p, SCHEMA))
        assert [t.to_pylist() for t in joined] == [t.to_pylist() for t in apart]
    assert read_partition(tmp_path / "block" / "other", 1, SCHEMA).to_pylist() == [
        r for task, (table, nodes) in sorted(senders.items()) for r, n in zip(table.slice(0, 5).to_pylist(), nodes[:5]) if n % 2 == 1
    ]
    with pytest.raises(RuntimeError, match="stop"), block_io(0, 1):  # a block that fails sends nothing
        write_partitioned(tmp_path / "failed", "from-00000", senders["from-00000-00000"][0], senders["from-00000-00000"][1] % 9, 9)
        raise RuntimeError("stop")
    assert not (tmp_path / "failed").exists()


def test_a_block_leaves_no_spool_and_sweeps_those_of_killed_processes(tmp_path, monkeypatch):
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / f"tmp/crawlmill-block-{dead}-abc").mkdir()  # a worker killed mid-block left it
    (tmp_path / f"tmp/crawlmill-block-{dead}-abc/in-0000-00000000").write_bytes(b"x" * 100)
    (tmp_path / "tmp/crawlmill-block-1-def").mkdir()  # pid 1 lives: another process's block
    table, nodes = _table(50, 2)
    with block_io(0, 2):
        write_partitioned(tmp_path / "step", "from-00000", table, nodes % 2, 2)
        write_partitioned(tmp_path / "step", "from-00001", table, nodes % 2, 2)
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == ["crawlmill-block-1-def"]
    assert read_partition(tmp_path / "step", 1, SCHEMA).num_rows == 2 * sum(int(n % 2) for n in nodes)
