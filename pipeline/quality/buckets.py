"""Percentile cut-offs of the quality score over a whole corpus, without one process holding it.

Each scoring task adds its documents to a histogram per language of `BINS` bins over the score's
range: document counts and byte weights (`histogram`). The driver sums the parts' histograms (a few
hundred KB each, one at a time) and reads off, per language:

- the bucket boundaries: the score at 5%, 10%, ..., 95% of the language's bytes (Nemotron-CC's
  token-weighted percentiles, with bytes for tokens: no tokenizer exists before the tokenizer
  stage); a document's `quality_bucket` is how many boundaries its score reaches (0 worst - 19 best);
- the score above which the best `keep_top` share of its documents lie (`top_cutoff`).

A boundary is a bin edge, so it is exact to 1/65,536 of the score range. The keep-top cut-off is
exact: when keeping the whole bin it falls in would keep more than the share asks (a model whose
scores all lie within 1/65,536 of each other, say), a second pass over the scores of that bin only
(`within_bin`, `refined_cutoff`; a file per part, summed one at a time) splits it into 65,536
sub-bins, each with its smallest score, and
the cut-off is the smallest score of the sub-bin that completes the share: a float32 score has at
most one value per sub-bin above 2^-8 of the range. Only documents of one and the same score (below
that, sub-bin) are kept together beyond the share; the stage reports the realised shares and warns
when they are far from `keep_top`.
"""

from __future__ import annotations

from typing import Any, Iterable

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


SUB_BINS = 1 << 16


def cut_bin(counts: np.ndarray, share: float) -> tuple[int, float]:
    """The bin of `top_cutoff` and how many of its documents the best `share` needs (> 0)."""
    from_top = np.cumsum(counts[::-1])
    last = int(np.searchsorted(from_top, share * from_top[-1], side="left"))
    index = BINS - 1 - last
    return index, float(share * from_top[-1] - (from_top[last] - counts[index]))


def within_bin(scores: np.ndarray, index: int, max_score: float) -> dict[str, list]:
    """The scores (float32, as scored) that fall in bin `index`: their sub-bins, counts and smallest
    score per sub-bin (sparse, JSON-ready)."""
    known = scores[~np.isnan(scores)]
    values = known[bins_of(known, max_score) == index].astype(np.float64)
    width = max_score / BINS
    subs = np.clip(np.floor((values - index * width) / width * SUB_BINS), 0, SUB_BINS - 1).astype(np.int64)
    unique, inverse, counts = np.unique(subs, return_inverse=True, return_counts=True)
    smallest = np.full(len(unique), np.inf)
    np.minimum.at(smallest, inverse, values)
    return {"sub": unique.tolist(), "count": counts.tolist(), "min": smallest.tolist()}


def refined_cutoff(parts: Iterable[dict[str, Any]], needed: float) -> float:
    """The smallest score of the sub-bin that completes the `needed` best documents of the cut bin
    (`within_bin` of every part, taken one at a time): every document scoring at least it is kept,
    no other."""
    counts = np.zeros(SUB_BINS, np.int64)
    smallest = np.full(SUB_BINS, np.inf)
    for part in parts:
        subs = np.asarray(part["sub"], dtype=np.int64)
        np.add.at(counts, subs, np.asarray(part["count"], dtype=np.int64))
        np.minimum.at(smallest, subs, np.asarray(part["min"], dtype=np.float64))
    from_top = np.cumsum(counts[::-1])
    last = min(int(np.searchsorted(from_top, needed, side="left")), int(np.searchsorted(from_top, from_top[-1], side="left")))
    return float(smallest[SUB_BINS - 1 - last])
