"""Shingles of a document for near-duplicate detection: what two documents must share to be near copies.

Text is normalised first (NFKC, lower case, punctuation and symbols removed, whitespace collapsed).
Space-delimited text is shingled into word 5-grams, as datatrove and the MinHash literature do.
Chinese (and Japanese) text has no spaces: word 5-grams would be whole sentences, so it is
shingled into character 5-grams of its non-space characters, which play the same role (a Chinese
character carries about as much as an English word). A document is treated as CJK when its
language is zh/ja (the filter stage's `lang`), or, with no language, when most of its letters are
CJK ideographs or kana.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import xxhash

WORD_NGRAM = 5
CJK_CHAR_NGRAM = 5
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_NOT_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", text)).strip()


def is_cjk(text: str, lang: str | None = None) -> bool:
    if lang:
        return lang in ("zh", "ja")
    letters = sum(ch.isalpha() for ch in text[:2000])
    return letters > 0 and len(_CJK.findall(text[:2000])) > 0.5 * letters


def shingles(text: str, lang: str | None = None) -> list[str]:
    """The document's shingles, in order (duplicates kept; callers take sets)."""
    norm = normalize(text)
    if is_cjk(norm, lang):
        chars = norm.replace(" ", "")
        n = CJK_CHAR_NGRAM
        return [chars[i : i + n] for i in range(max(len(chars) - n + 1, 1))] if chars else []
    words = norm.split()
    n = WORD_NGRAM
    return [" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))] if words else []


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MASK = (1 << 64) - 1


def salt(k: int) -> np.uint64:
    """A distinct 64-bit constant for position or index k."""
    return np.uint64((0x9E3779B97F4A7C15 * (k + 1)) & _MASK)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit mixer, vectorised (uint64 arithmetic wraps)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def mix64_inplace(x: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """mix64 computed in place (scratch: an array of x's shape): no temporaries, 4-5x faster on
    the signature's (hash functions x shingles) blocks."""
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        np.right_shift(x, np.uint64(shift), out=scratch)
        np.bitwise_xor(x, scratch, out=x)
        np.multiply(x, np.uint64(multiplier), out=x)
    np.right_shift(x, np.uint64(31), out=scratch)
    return np.bitwise_xor(x, scratch, out=x)


def _ngram_hashes(units: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of every n-gram of a sequence of unit hashes, without a Python loop per n-gram."""
    if len(units) <= n:
        n = max(len(units), 1)
    count = len(units) - n + 1
    combined = np.zeros(count, dtype=np.uint64)
    for k in range(n):  # n is 5: five vectorised steps, position-dependent so order matters
        combined = mix64(combined ^ units[k : k + count] ^ salt(k))
    return combined


def shingle_hashes(text: str, lang: str | None = None, normalized: bool = False) -> np.ndarray:
    """Distinct 64-bit hashes of the document's shingles (uint64, sorted): one hash per shingle of
    `shingles(text, lang)`, computed from per-word xxh3 hashes (or code points) with numpy.
    `normalized`: the text is already `normalize(text)` (dedup's map step needs both)."""
    norm = text if normalized else normalize(text)
    if is_cjk(norm, lang):
        chars = norm.replace(" ", "")
        if not chars:
            return np.empty(0, dtype=np.uint64)
        units = mix64(np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + _GOLDEN)
        return np.unique(_ngram_hashes(units, CJK_CHAR_NGRAM))
    words = norm.split()
    if not words:
        return np.empty(0, dtype=np.uint64)
    units = np.fromiter((xxhash.xxh3_64_intdigest(w) for w in words), dtype=np.uint64, count=len(words))
    return np.unique(_ngram_hashes(units, WORD_NGRAM))
