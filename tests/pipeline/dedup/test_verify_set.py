"""Verification's shingle sets travel as 32-bit hashes (verify.verify_set): the high half of each
distinct 64-bit shingle hash, distinct and sorted. On real English and Chinese text edited to
Jaccard similarities around the 0.8 threshold, every pair's verdict is the 64-bit sets' and the
similarity moves by less than one shingle in the union."""

import json
import random

import numpy as np
import pytest

from crawlmill.pipeline.dedup.shingles import shingle_hashes
from crawlmill.pipeline.dedup.verify import verify_set


def jaccard(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    shared = np.intersect1d(a, b, assume_unique=True).size
    return shared, len(a) + len(b) - shared


def edited(rng: random.Random, text: str, share: float, chinese: bool) -> str:
    units = list(text) if chinese else text.split()
    for _ in range(int(len(units) * share)):
        units[rng.randrange(len(units))] = chr(0x4E00 + rng.randrange(20_000)) if chinese else f"w{rng.randrange(10**6)}"
    return ("" if chinese else " ").join(units)


@pytest.fixture(scope="module")
def pages(shared_data):
    english = [json.loads(line)["text"] for line in (shared_data / "text/en/wikitext-2-valid.articles.jsonl").open()]
    chinese = [line.strip() for line in (shared_data / "text/zh/cmrc2018_contexts.txt").open(encoding="utf-8")]
    return [(t, "en") for t in english if len(t.split()) > 300][:40] + [(t, "zh") for t in chinese if len(t) > 400][:40]


def test_sets_are_the_high_halves_distinct_and_sorted(pages):
    for text, lang in pages[::10]:
        full, half = shingle_hashes(text, lang), verify_set(text, lang)
        assert half.dtype == np.uint32 and np.all(np.diff(half.astype(np.int64)) > 0)
        assert np.array_equal(half, np.unique(full >> np.uint64(32)).astype(np.uint32))
        assert len(full) - 1 <= len(half) <= len(full)  # a shared high half: a few in 10^5 per page
    assert verify_set("", "en").dtype == np.uint32 and not len(verify_set("", "en"))


def test_verdicts_near_the_threshold_are_the_64_bit_ones(pages):
    rng = random.Random(3)
    verdicts, near = 0, 0
    for text, lang in pages:
        for share in (0.01, 0.02, 0.03, 0.04, 0.05, 0.08):
            copy = edited(rng, text, share, lang == "zh")
            shared64, union64 = jaccard(shingle_hashes(text, lang), shingle_hashes(copy, lang))
            shared32, union32 = jaccard(verify_set(text, lang), verify_set(copy, lang))
            assert abs(shared32 / union32 - shared64 / union64) <= 1 / union64, (lang, share)
            assert (shared32 >= 0.8 * union32) == (shared64 >= 0.8 * union64), (lang, share, shared64 / union64)
            verdicts += 1
            near += abs(shared64 / union64 - 0.8) < 0.05
    assert verdicts == 480 and near >= 40  # many pairs close to the threshold, both languages
