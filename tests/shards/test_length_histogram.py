"""`shards stats`' document lengths (shards/shardstats.py LengthHistogram): the same summary numpy
gives over every length, from counts per length, so that memory is bounded by the longest document,
not by the number of documents (one length per document was held before)."""

import numpy as np

from crawlmill.shards.shardstats import LengthHistogram


def test_the_summary_equals_numpys_over_every_length():
    rng = np.random.default_rng(0)
    for _ in range(200):
        short = rng.integers(1, 3000, rng.integers(1, 400))
        long = rng.integers(LengthHistogram.DENSE_LENGTHS, 3 * LengthHistogram.DENSE_LENGTHS, rng.integers(0, 6))
        lengths = rng.permutation(np.concatenate([short, long])).astype(np.int32)
        histogram = LengthHistogram()
        for shard in np.array_split(lengths, 4):
            histogram.add(shard)
        q50, q90, q99 = np.percentile(lengths, [50, 90, 99])
        expected = {"mean": round(float(lengths.mean()), 2), "median": q50, "p90": q90, "p99": q99, "min": int(lengths.min()), "max": int(lengths.max())}
        assert histogram.summary() == expected
    assert LengthHistogram().summary() == {}


def test_memory_does_not_grow_with_the_documents():
    histogram = LengthHistogram()
    for _ in range(20):
        histogram.add(np.random.default_rng(1).integers(1, 4000, 100_000))
    histogram.add(np.array([LengthHistogram.DENSE_LENGTHS + 5] * 1000))
    values, counts = histogram.values_and_counts()
    assert histogram.dense.nbytes == 8 * LengthHistogram.DENSE_LENGTHS and len(histogram.long) == 1
    assert counts.sum() == 2_001_000 and values[-1] == LengthHistogram.DENSE_LENGTHS + 5
