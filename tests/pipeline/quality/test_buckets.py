"""Percentile buckets from summed histograms against exact weighted quantiles (numpy), and the
keep-top cut-off against the exact top share."""

import numpy as np
import pytest

from crawlmill.pipeline.quality import buckets as hist


def weighted_quantile(scores: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(scores, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(scores[order][np.searchsorted(cumulative, q * cumulative[-1], side="left")])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundaries_are_byte_weighted_percentiles_to_a_bin(seed):
    rng = np.random.default_rng(seed)
    scores = rng.beta(2, 5, size=20_000).astype(np.float32)
    weights = rng.integers(100, 50_000, size=len(scores))
    parts = [hist.histogram(scores[i::7], weights[i::7], 1.0) for i in range(7)]  # seven parts, summed
    total = sum(parts)
    assert total[0].sum() == len(scores) and total[1].sum() == weights.sum()
    edges = hist.boundaries(total[1], 20, 1.0)
    assert len(edges) == 19 and edges == sorted(edges)
    for k, edge in enumerate(edges, 1):
        assert abs(edge - weighted_quantile(scores, weights, k / 20)) <= 1 / hist.BINS + 1e-7
    buckets = hist.bucket_of(scores, edges)
    share = np.bincount(buckets, weights=weights, minlength=20) / weights.sum()
    assert np.abs(share - 0.05).max() < 0.005  # each bucket holds ~5% of the bytes


def test_top_cutoff_keeps_the_best_share():
    rng = np.random.default_rng(3)
    scores = rng.random(10_000).astype(np.float32)
    counts = hist.histogram(scores, np.ones(len(scores), np.int64), 1.0)[0]
    for share in (0.1, 0.3, 0.9):
        cut = hist.top_cutoff(counts, share, 1.0)
        kept = (scores >= cut).mean()
        assert share <= kept <= share + 0.001


def test_unscored_documents_are_left_out_and_get_no_bucket():
    scores = np.array([0.1, np.nan, 0.9], dtype=np.float32)
    counts = hist.histogram(scores, np.array([1, 1, 1]), 1.0)
    assert counts[0].sum() == 2
    assert hist.bucket_of(scores, [0.5]).tolist() == [0, -1, 1]
    assert hist.boundaries(np.zeros(hist.BINS, np.int64), 20, 1.0) == []


@pytest.mark.parametrize("center", [0.5, 0.02, 0.9999])
def test_keep_top_cutoff_is_exact_when_every_score_falls_in_one_bin(center):
    """Scores within 1/65,536 of each other (a model that barely tells documents apart): the bin's
    second pass (within_bin over seven parts, refined_cutoff) gives the exact score of the share's
    last document, where the bin edge alone kept all of them."""
    rng = np.random.default_rng(4)
    width = 1 / hist.BINS
    scores = (np.floor(center / width) * width + (0.01 + 0.98 * rng.random(5_000)) * width).astype(np.float32)
    assert len(set(hist.bins_of(scores, 1.0).tolist())) == 1
    counts = hist.histogram(scores, np.ones(len(scores), np.int64), 1.0)[0]
    for share in (0.1, 0.3, 0.77):
        assert (scores >= hist.top_cutoff(counts, share, 1.0)).mean() == 1.0  # the bin edge: everything
        index, needed = hist.cut_bin(counts, share)
        cut = hist.refined_cutoff([hist.within_bin(scores[i::7], index, 1.0) for i in range(7)], needed)
        ordered = np.sort(scores)[::-1]
        assert cut == float(ordered[int(np.ceil(share * len(scores))) - 1])
        assert (scores >= cut).sum() == (ordered >= ordered[int(np.ceil(share * len(scores))) - 1]).sum()
