"""Verification chunks close at a byte budget as well as at a pair count: a chunk of long documents'
pairs (a set of a 1,000,000-character text is ~0.7 MB) holds fewer pairs, never more bytes, and
the output is the one of a single chunk per sender."""

import random
from collections import defaultdict
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.pipeline.dedup import steps, verify
from crawlmill.pipeline.dedup.config import VERIFY_SET_BYTES, DedupConfig
from crawlmill.pipeline.dedup.shuffle import sender_files, sender_rows
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.parts import commit_folder
from crawlmill.pipeline.runner import run_stage
from tests.pipeline.dedup.conftest import folder_bytes


def test_chunks_respect_both_limits_and_are_greedy():
    rng = np.random.default_rng(0)
    sizes = rng.choice([8, 3000, 40_000, 1_400_000], size=2000, p=[0.1, 0.8, 0.08, 0.02]).astype(np.int64)
    max_pairs, max_bytes = 64, 200_000
    chunks = verify.verify_chunks(sizes, max_pairs, max_bytes)
    assert chunks == verify.verify_chunks(sizes.copy(), max_pairs, max_bytes)  # a function of the sizes
    assert chunks[0][0] == 0 and chunks[-1][1] == len(sizes)
    assert all(a[1] == b[0] for a, b in pairwise(chunks))  # contiguous, in order: every pair once
    for start, end in chunks:
        assert 1 <= end - start <= max_pairs
        assert sizes[start:end].sum() <= max_bytes or end - start == 1  # a set over the budget goes alone
        if end < len(sizes):  # closed only when the next pair would not fit
            assert end - start == max_pairs or sizes[start : end + 1].sum() > max_bytes
    assert verify.verify_chunks(np.empty(0, np.int64), 4, 100) == []
    assert verify.verify_chunks(np.full(10, 5), 4, 10**9) == [(0, 4), (4, 8), (8, 10)]  # pairs alone, as before


def long_text(rng: random.Random, words: int) -> list[str]:
    return [f"w{rng.randrange(20_000)}" for _ in range(words)]


def near_copy(rng: random.Random, words: list[str], edits: int) -> str:
    copy = list(words)
    for _ in range(edits):
        copy[rng.randrange(len(copy))] = f"x{rng.randrange(10**6)}"
    return " ".join(copy)


def write_input(folder):
    """Four long texts (~4,000 distinct 5-grams: ~16 KB sets) with three near copies each, and short pages."""
    rng = random.Random(1)
    texts = []
    for base in range(4):
        words = long_text(rng, 4000)
        texts += [" ".join(words)] + [near_copy(rng, words, 20) for _ in range(3)]
    texts += [" ".join(long_text(rng, 60)) for _ in range(20)]
    ids = [f"doc-{i:03d}" for i in range(len(texts))]
    folder.mkdir(parents=True)
    table = pa.table({"id": ids, "text": texts, "url": [f"https://example.org/{i}" for i in ids], "dump": ["CC-MAIN-2024-10"] * len(texts), "lang": ["en"] * len(texts)})
    pq.write_table(table, folder / "part-00000.parquet")
    commit_folder(folder)
    return folder


def chunk_bytes(work) -> dict[str, list[int]]:
    """(sender, chunk) file name -> the shingle bytes of each pair it carries, over all receivers."""
    chunks = defaultdict(list)
    for path, size in sender_files(work / steps.VERIFY):
        for p in range(2):  # the runs below use 2 partitions
            table = sender_rows(path, size, p, steps.VERIFY_SCHEMA)
            if table is not None:
                chunks[path.name] += [len(s) * steps.SHINGLE_BYTES for s in table.column("src_shingles").to_pylist()]
    return chunks


def test_long_documents_close_a_chunk_at_its_byte_budget_and_change_no_result(ray_local, tmp_path):
    source = write_input(tmp_path / "input")

    def run(out, pairs):
        assert run_stage(DedupStage(DedupConfig(inputs=[str(source)], partitions=2, verify_chunk_pairs=pairs)), out, progress=False).ok

    run(tmp_path / "small", 8)  # a budget of 8 pairs or 8 x 1.5 KiB = 12 KiB of shingle sets
    run(tmp_path / "whole", 1 << 20)  # one chunk per sender
    budget = 8 * VERIFY_SET_BYTES
    whole = chunk_bytes(tmp_path / "whole/_work")
    assert len(whole) <= 2 and max(sum(sizes) for sizes in whole.values()) > budget  # the long pairs exceed it together
    small = chunk_bytes(tmp_path / "small/_work")
    assert len(small) > len(whole)
    for name, sizes in small.items():
        assert len(sizes) <= 8 and (sum(sizes) <= budget or len(sizes) == 1), (name, sizes)
    assert sorted(s for sizes in small.values() for s in sizes) == sorted(s for sizes in whole.values() for s in sizes)  # the same pairs

    differs = {k for k in folder_bytes(tmp_path / "small").keys() | folder_bytes(tmp_path / "whole").keys()
               if folder_bytes(tmp_path / "small").get(k) != folder_bytes(tmp_path / "whole").get(k)}  # fmt: skip
    assert differs <= {"_tasks.json"}, differs  # only the recorded settings differ
    removed = pq.read_table(tmp_path / "small/_duplicates").to_pylist()
    assert len(removed) == 12 and {r["reason"] for r in removed} == {"near_duplicate"}
