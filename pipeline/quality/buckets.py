"""Percentile cut-offs of the quality score over a whole corpus, without one process holding it.

Each scoring task adds its documents to a histogram per language of `BINS` bins over the score's
range: document counts and byte weights (`histogram`). The driver sums the parts' histograms (a few
hundred KB each, one at a time) and reads off, per language:

- the bucket boundaries: the score at 5%, 10%, ..., 95% of the language's bytes (Nemotron-CC's
  token-weighted percentiles, with bytes for tokens: no tokenizer exists before the tokenizer
  stage); a document's `quality_bucket` is how many boundaries its score reaches (0 worst - 19 best);
- the score above which the best `keep_top` share of its documents lie (`top_cutoff`).

A boundary is a bin edge, so it is exact to 1/65,536 of the score range; the realised shares are
reported (documents in the bin of a cut-off go with the better side).
"""

from __future__ import annotations

import numpy as np

BINS = 1 << 16


def bins_of(scores: np.ndarray, max_score: float) -> np.ndarray:
    return np.clip((scores / max_score * BINS).astype(np.int64), 0, BINS - 1)


def histogram(scores: np.ndarray, weights: np.ndarray, max_score: float) -> np.ndarray:
    """(2, BINS) int64: document counts and summed weights per score bin (NaN scores left out)."""
    known = ~np.isnan(scores)
    bins = bins_of(scores[known], max_score)
    return np.stack([np.bincount(bins, minlength=BINS), np.bincount(bins, weights=weights[known], minlength=BINS).astype(np.int64)])


def boundaries(weights: np.ndarray, buckets: int, max_score: float) -> list[float]:
    """Scores at 1/buckets, 2/buckets ... of the total weight, as bin edges."""
    cumulative = np.cumsum(weights)
    total = cumulative[-1] if len(cumulative) else 0
    if total == 0:
        return []
    edges = []
    for k in range(1, buckets):
        first = int(np.searchsorted(cumulative, k / buckets * total, side="left"))
        edges.append(float(first * max_score / BINS))
    return edges


def bucket_of(scores: np.ndarray, edges: list[float]) -> np.ndarray:
    """How many boundaries each score reaches (NaN: -1)."""
    out = np.searchsorted(np.asarray(edges), scores, side="right").astype(np.int8)
    out[np.isnan(scores)] = -1
    return out


def top_cutoff(counts: np.ndarray, share: float, max_score: float) -> float:
    """The bin edge above which the best `share` of the documents lie (the cut-off bin included)."""
    from_top = np.cumsum(counts[::-1])
    total = from_top[-1] if len(from_top) else 0
    if total == 0:
        return 0.0
    last = int(np.searchsorted(from_top, share * total, side="left"))  # bins counted from the top
    return float((BINS - 1 - last) * max_score / BINS)
