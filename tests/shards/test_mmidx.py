"""The MMIDIDX writer (pack's `index_bytes`) against Megatron-Core's IndexedDatasetBuilder, and the
validating reader (crawlmill/shards/mmidx.py) against truncated, corrupt and forged .idx files (a
seeded fuzz loop): always a ShardError naming the file, in bounded time and memory, never a crash,
hang or large allocation."""

import os
import struct
import time
import tracemalloc

import numpy as np
import pytest

from crawlmill.pipeline.pack.shards import index_bytes
from crawlmill.pipeline.pack.tokenizer import optimal_dtype
from crawlmill.shards.mmidx import HEADER_SIZE, ShardError, check_index, read_index, scan_tokens


def megatron_shard(folder, documents, dtype):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(str(folder / "ref.bin"), dtype=dtype)
    for doc in documents:
        builder.add_document(list(doc), [len(doc)])
    builder.finalize(str(folder / "ref.idx"))
    return folder / "ref"


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_index_bytes_equal_indexed_dataset_builder(tmp_path, dtype):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    rng = np.random.default_rng(0)
    documents = [rng.integers(0, 60000, size=int(n)) for n in rng.integers(1, 300, size=257)]
    prefix = megatron_shard(tmp_path, documents, dtype)
    lengths = np.array([len(d) for d in documents])
    assert index_bytes(lengths, dtype) == (tmp_path / "ref.idx").read_bytes()
    assert np.concatenate(documents).astype(dtype).tobytes() == (tmp_path / "ref.bin").read_bytes()
    assert index_bytes(np.zeros(0, np.int32), dtype) == megatron_empty(tmp_path, dtype)
    # Our reader accepts Megatron's file and Megatron reads ours.
    index = read_index(tmp_path / "ref.idx")
    assert check_index(index, os.path.getsize(tmp_path / "ref.bin")) == lengths.sum()
    (tmp_path / "ours.idx").write_bytes(index_bytes(lengths, dtype))
    os.link(tmp_path / "ref.bin", tmp_path / "ours.bin")
    ours = IndexedDataset(str(tmp_path / "ours"))
    assert len(ours) == len(documents) and (ours[100] == documents[100]).all()
    del prefix


def megatron_empty(folder, dtype):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(str(folder / "empty.bin"), dtype=dtype)
    builder.finalize(str(folder / "empty.idx"))
    return (folder / "empty.idx").read_bytes()


def test_dtype_rule_is_megatrons():
    from megatron.core.datasets.indexed_dataset import DType

    for vocab in (1, 50257, 65499, 65500, 65536, 100002, 102400, 256000):
        assert optimal_dtype(vocab) == DType.optimal_dtype(vocab)


@pytest.fixture()
def real_shard(tmp_path):
    rng = np.random.default_rng(1)
    documents = [rng.integers(0, 1000, size=int(n)) for n in rng.integers(1, 50, size=40)]
    megatron_shard(tmp_path, documents, np.int32)
    return tmp_path / "ref.idx", tmp_path / "ref.bin"


def check_file(idx_path, bin_path):
    index = read_index(idx_path)
    check_index(index, os.path.getsize(bin_path), bin_path)
    scan_tokens(bin_path, index.dtype, vocab_size=1000)


def header(sequences, documents, code=4, version=1, magic=b"MMIDIDX\x00\x00"):
    return magic + struct.pack("<Q", version) + bytes([code]) + struct.pack("<QQ", sequences, documents)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:5], "wrong magic|truncated"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b"NOTANIDX!" + b[9:], "not an MMIDIDX index"),
        (lambda b: b[:9] + struct.pack("<Q", 2) + b[17:], "unsupported index version 2"),
        (lambda b: b[:17] + bytes([6]) + b[18:], "dtype code 6"),
        (lambda b: b[:17] + bytes([99]) + b[18:], "dtype code 99"),
        (lambda b: b[:18] + struct.pack("<Q", 2**63) + b[26:], "counts do not match the file size"),
        (lambda b: b[:26] + struct.pack("<Q", 2**64 - 1) + b[34:], "counts do not match the file size"),
        (lambda b: b[:-3], "counts do not match the file size"),
        (lambda b: b + b"\x00" * 8, "counts do not match the file size"),
        (lambda b: b[:HEADER_SIZE] + struct.pack("<i", -5) + b[HEADER_SIZE + 4 :], "negative length"),
        (lambda b: b[:HEADER_SIZE] + struct.pack("<i", 2**31 - 1) + b[HEADER_SIZE + 4 :], "points at byte|out of range"),
        (lambda b: b[: HEADER_SIZE + 40 * 4 + 8] + struct.pack("<q", 2**62) + b[HEADER_SIZE + 40 * 4 + 16 :], "points at byte"),
        (lambda b: b[:-8] + struct.pack("<q", 39), "last document index is 39"),
        (lambda b: b[:-16] + struct.pack("<q", 45) + b[-8:], "run past|goes backwards"),
        (lambda b: b[: -8 * 41] + struct.pack("<q", 3) + b[-8 * 40 :], "must start at 0"),
    ],
)
def test_hostile_index_gives_a_clear_error(real_shard, tmp_path, mutate, message):
    idx_path, bin_path = real_shard
    bad = tmp_path / "bad.idx"
    bad.write_bytes(mutate(idx_path.read_bytes()))
    with pytest.raises(ShardError, match=message) as error:
        check_file(bad, bin_path)
    assert str(bad) in str(error.value)


def test_bin_problems_name_the_bin(real_shard, tmp_path):
    idx_path, bin_path = real_shard
    data = bin_path.read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(data[:-4])
    with pytest.raises(ShardError, match=r"short.bin, which has 3,952 \(pointers or lengths out of range\)"):
        check_file(idx_path, short)
    odd = tmp_path / "odd.bin"
    odd.write_bytes(data + b"\x01")
    with pytest.raises(ShardError, match="odd.bin"):
        check_file(idx_path, odd)
    big = tmp_path / "big.bin"
    big.write_bytes(data[:8] + struct.pack("<i", 5000) + data[12:])
    with pytest.raises(ShardError, match="token 2 has id 5000, not below the vocabulary size 1,000"):
        check_file(idx_path, big)
    with pytest.raises(ShardError, match="cannot read"):
        read_index(tmp_path / "missing.idx")


def test_fuzzed_index_never_crashes_hangs_or_allocates_much(real_shard, tmp_path):
    """2,000 seeded mutations of a real .idx: truncations, bit flips, random bytes, forged counts."""
    idx_path, bin_path = real_shard
    original = idx_path.read_bytes()
    rng = np.random.default_rng(2026)
    bad = tmp_path / "fuzz.idx"
    outcomes = {"ok": 0, "error": 0}
    tracemalloc.start()
    started = time.perf_counter()
    for trial in range(2000):
        data = bytearray(original)
        kind = trial % 5
        if kind == 0:
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 1:
            for _ in range(int(rng.integers(1, 8))):
                position = int(rng.integers(0, len(data)))
                data[position] ^= 1 << int(rng.integers(0, 8))
        elif kind == 2:
            position = int(rng.integers(0, len(data) - 8))
            data[position : position + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        elif kind == 3:  # forged counts, consistent with each other or not
            sequences, documents = (int(x) for x in rng.integers(0, 2**63, 2, dtype=np.uint64))
            if rng.random() < 0.5:
                sequences, documents = sequences % 10**12, sequences % 10**12 + 1
            data[18:34] = struct.pack("<QQ", sequences, documents)
        else:  # a forged header whose counts match a padded file size exactly
            sequences = int(rng.integers(0, 200))
            documents = int(rng.integers(1, 200))
            body = rng.integers(-(2**62), 2**62, size=(12 * sequences + 8 * documents) // 8 + 1, dtype=np.int64).tobytes()
            data = bytearray(header(sequences, documents, code=int(rng.choice([4, 8]))) + body[: 12 * sequences + 8 * documents])
        bad.write_bytes(bytes(data))
        try:
            check_file(bad, bin_path)
            outcomes["ok"] += 1
        except ShardError as exc:
            assert str(bad) in str(exc)
            outcomes["error"] += 1
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert outcomes["error"] > 1500
    assert peak < 64 << 20, f"peak traced allocation {peak:,} bytes"
    assert elapsed < 60
