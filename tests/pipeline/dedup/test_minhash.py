"""Our vectorised MinHash against datasketch, the reference, on the same shingles."""

import random

import datasketch
import numpy as np
import pytest

from crawlmill.pipeline.dedup.config import MinHashConfig
from crawlmill.pipeline.dedup.minhash import band_keys, estimated_jaccard, permutation_seeds, signatures
from crawlmill.pipeline.dedup.shingles import shingle_hashes, shingles

WORDS = ("river garden council library budget repairs opening hours station market school bridge road "
         "winter summer harvest village mayor teacher doctor nurse baker farmer museum theatre").split()  # fmt: skip


def variant(rng: random.Random, base: list[str], edits: int) -> list[str]:
    words = list(base)
    for _ in range(edits):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return words


@pytest.fixture(scope="module")
def pairs():
    rng = random.Random(7)
    out = []
    for i in range(120):
        base = [rng.choice(WORDS) for _ in range(150)]
        other = variant(rng, base, rng.choice([0, 2, 5, 10, 20, 40, 80]))
        out.append((" ".join(base), " ".join(other)))
    return out


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def test_shingle_hashes_are_one_hash_per_distinct_shingle():
    for text in ["The quick brown fox jumps over the lazy dog again and again", "北京今天天气晴朗，市民纷纷到公园散步。" * 2, "短", ""]:
        assert len(shingle_hashes(text)) == len(set(shingles(text)))
    assert shingles("北京今天天气晴朗")[0] == "北京今天天"  # Chinese: character 5-grams
    assert shingles("One two three four five six")[1] == "two three four five six"


def test_signature_estimates_jaccard_like_datasketch(pairs):
    config = MinHashConfig()
    ours_err, theirs_err = [], []
    for a, b in pairs:
        sa, sb = set(shingles(a)), set(shingles(b))
        truth = jaccard(sa, sb)
        sig = signatures([shingle_hashes(a), shingle_hashes(b)], config)
        ma, mb = datasketch.MinHash(num_perm=config.num_perm, seed=3), datasketch.MinHash(num_perm=config.num_perm, seed=3)
        ma.update_batch([s.encode() for s in sa])
        mb.update_batch([s.encode() for s in sb])
        ours_err.append(estimated_jaccard(sig[0], sig[1]) - truth)
        theirs_err.append(ma.jaccard(mb) - truth)
    ours_err, theirs_err = np.array(ours_err), np.array(theirs_err)
    assert abs(ours_err.mean()) < 0.02  # unbiased, as datasketch
    assert np.abs(ours_err).mean() < 1.5 * np.abs(theirs_err).mean() + 0.005
    assert np.abs(ours_err).max() < 0.2


def test_lsh_candidates_agree_with_datasketch(pairs):
    config = MinHashConfig()
    lsh_agree, total = 0, 0
    for i, (a, b) in enumerate(pairs):
        sa, sb = set(shingles(a)), set(shingles(b))
        keys = band_keys(signatures([shingle_hashes(a), shingle_hashes(b)], config), config)
        ours = bool(np.any(keys[0] == keys[1]))
        lsh = datasketch.MinHashLSH(num_perm=config.num_perm, params=(config.bands, config.rows))
        ma, mb = datasketch.MinHash(num_perm=config.num_perm), datasketch.MinHash(num_perm=config.num_perm)
        ma.update_batch([s.encode() for s in sa])
        mb.update_batch([s.encode() for s in sb])
        lsh.insert("a", ma)
        theirs = "a" in lsh.query(mb)
        truth = jaccard(sa, sb)
        if truth >= 0.9 or truth <= 0.4:  # far from the threshold both must decide alike
            total += 1
            lsh_agree += ours == theirs == (truth >= 0.9)
    assert total > 60 and lsh_agree >= 0.97 * total


def test_band_keys_and_candidate_probability():
    config = MinHashConfig()
    h = shingle_hashes("a b c d e f g h i j k l m n o p")
    keys = band_keys(signatures([h, h.copy(), np.empty(0, np.uint64)], config), config)
    assert (keys[0] == keys[1]).all() and keys.shape == (3, 14)
    assert config.candidate_probability(0.8) == pytest.approx(0.9235, abs=1e-3)
    assert config.candidate_probability(0.5) < 0.06


def test_in_place_mixer_equals_mix64_and_signatures_are_exact_minima():
    from crawlmill.pipeline.dedup.shingles import mix64, mix64_inplace

    x = np.random.default_rng(0).integers(0, 2**63, size=(3, 1000), dtype=np.int64).astype(np.uint64)
    assert (mix64_inplace(x.copy(), np.empty_like(x)) == mix64(x)).all()
    config = MinHashConfig(bands=3, rows=3)  # 9 hash functions: blocks of 4, 4 and 1
    docs = [x[0, :10], x[1, :1], x[2]]
    sig = signatures(docs, config)
    for i, doc in enumerate(docs):
        assert (sig[i] == mix64(doc[:, None] ^ permutation_seeds(config)[None, :]).min(axis=0)).all()
