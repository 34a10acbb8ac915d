"""Shingles of a document for near-duplicate detection: what two documents must share to be near copies.

Text is normalised first (NFKC, lower case, punctuation and symbols removed, whitespace collapsed;
a combining mark stays with the letter it follows). Space-delimited text is shingled into word
5-grams, as datatrove and the MinHash literature do. Chinese and Japanese have no spaces between
words: word 5-grams would be whole sentences, so their text is shingled into character 5-grams of
its non-space characters, which play the same role (a Chinese word is one or two characters).
Thai, Lao, Khmer and Myanmar have no spaces between words either (a space ends a phrase, ~4.5
words): their text is shingled into character 12-grams. Measured on real Thai text (wisesight,
human word-segmented), with 1% / 3% of the words replaced, 12-grams keep a Jaccard of 0.90 / 0.77
where English word 5-grams keep 0.91 / 0.76; phrase 5-grams kept 0.65 / 0.31 (near copies missed),
character 5-grams 0.95 / 0.87 (looser than English). A document's script class comes from its
language (the filter stage's `lang`), or, with no language, from the script of most of its letters.

`text_format` says which normalisation and shingling a run uses; an index keeps the one it was
built with (index.py), so that its runs' documents compare with each other:
1 (crawlmill before 2026-12): combining marks became spaces like punctuation, cutting words of
  scripts that write vowels or tones as marks into pieces (Devanagari नमस्ते -> नमस ते, vocalised
  Arabic مُحَمَّد -> م ح م د, Thai กรุงเทพ -> กร งเทพ), and Thai, Lao, Khmer and Myanmar were
  shingled as word 5-grams of what spaces separate.
2: marks kept with their letters; those four scripts as character 12-grams.
Text without combining marks in any other script (English, Chinese) gives the same shingles in both.
"""

from __future__ import annotations

import re
import sys
import unicodedata

import numpy as np
import xxhash

TEXT_FORMAT = 2  # what a new run uses
TEXT_FORMATS = (1, 2)
WORD_NGRAM = 5
CJK_CHAR_NGRAM = 5
SEA_CHAR_NGRAM = 12
CJK_LANGS = ("zh", "ja")
SEA_LANGS = ("th", "lo", "km", "my")  # lid.176's labels of Thai, Lao, Khmer, Myanmar
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SEA = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]")
_NOT_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")


def _mark_class(codes: range | list[int]) -> str:
    """A regex class body of the combining marks (Mn, Mc) among `codes` that belong to a letter.
    Variation selectors (emoji presentation) are a symbol's part: they go with the symbol."""
    selectors = set(range(0xFE00, 0xFE10)) | set(range(0xE0100, 0xE01F0))
    marks = [c for c in codes if c not in selectors and unicodedata.category(chr(c)) in ("Mn", "Mc")]
    ranges, start = [], marks[0]
    for prev, code in zip(marks, marks[1:] + [sys.maxunicode + 2]):
        if code != prev + 1:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(prev))}" if prev > start else re.escape(chr(start)))
            start = code
    return "".join(ranges)


# re compiles a class of BMP characters into a bitmap, one of astral ones into a list it scans:
# astral marks (historic scripts, Adlam) are looked up only for astral characters. Planes 2-13
# hold no marks; not scanning them keeps this to ~40 ms per process.
_BMP_MARKS = _mark_class(range(0x10000))
_ASTRAL_MARKS = _mark_class([*range(0x10000, 0x20000), *range(0xE0000, 0xE1000)])
_MARK = rf"(?:[{_BMP_MARKS}]|[\U00010000-\U0010ffff](?<=[{_ASTRAL_MARKS}]))"
# Punctuation, symbols and _ (not their marks: the pass after this one takes those).
_NOT_WORD_OR_MARK = re.compile(rf"[^\w\s{_BMP_MARKS}\U00010000-\U0010ffff]|_|[^\w\x00-\uffff](?<![{_ASTRAL_MARKS}])")
_LONE_MARKS = re.compile(rf"\s{_MARK}+")  # after the pass above: marks that follow no letter
_LEADING_MARKS = re.compile(rf"{_MARK}+")
_MAY_HOLD_MARKS = re.compile(rf"[{_BMP_MARKS}\U00010000-\U0010ffff]")  # a bitmap lookup: fast


def check_text_format(text_format: int) -> int:
    if text_format not in TEXT_FORMATS:
        raise ValueError(f"dedup text format {text_format}: this crawlmill knows {', '.join(map(str, TEXT_FORMATS))} (a newer crawlmill wrote it?)")
    return text_format


def normalize(text: str, text_format: int = TEXT_FORMAT) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    if text_format == 1 or not _MAY_HOLD_MARKS.search(text):  # no mark, no astral character: both formats agree
        return _SPACES.sub(" ", _NOT_WORD.sub(" ", text)).strip()
    # Punctuation and symbols go first, so that a mark that followed one (an emoji's) follows a space.
    text = _LONE_MARKS.sub(" ", _NOT_WORD_OR_MARK.sub(" ", text))
    leading = _LEADING_MARKS.match(text)
    return _SPACES.sub(" ", text[leading.end() :] if leading else text).strip()


def script_unit(text: str, lang: str | None = None, text_format: int = TEXT_FORMAT) -> tuple[str, int]:
    """("words", 5) for space-delimited text, ("chars", n) for scripts without spaces between words."""
    sea = text_format >= 2
    if lang:
        if lang in CJK_LANGS:
            return "chars", CJK_CHAR_NGRAM
        return ("chars", SEA_CHAR_NGRAM) if sea and lang in SEA_LANGS else ("words", WORD_NGRAM)
    head = text[:2000]
    letters = sum(ch.isalpha() for ch in head)
    if letters and len(_CJK.findall(head)) > 0.5 * letters:
        return "chars", CJK_CHAR_NGRAM
    if sea and letters and sum(ch.isalpha() for ch in _SEA.findall(head)) > 0.5 * letters:
        return "chars", SEA_CHAR_NGRAM
    return "words", WORD_NGRAM


def shingles(text: str, lang: str | None = None, text_format: int = TEXT_FORMAT) -> list[str]:
    """The document's shingles, in order (duplicates kept; callers take sets)."""
    norm = normalize(text, text_format)
    unit, n = script_unit(norm, lang, text_format)
    items: str | list[str] = norm.replace(" ", "") if unit == "chars" else norm.split()
    join = "".join if unit == "chars" else " ".join
    return [join(items[i : i + n]) for i in range(max(len(items) - n + 1, 1))] if items else []


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
    for k in range(n):  # n vectorised steps (5 or 12), position-dependent so order matters
        combined = mix64(combined ^ units[k : k + count] ^ salt(k))
    return combined


def shingle_hashes(text: str, lang: str | None = None, normalized: bool = False, text_format: int = TEXT_FORMAT) -> np.ndarray:
    """Distinct 64-bit hashes of the document's shingles (uint64, sorted): one hash per shingle of
    `shingles(text, lang, text_format)`, computed from per-word xxh3 hashes (or code points) with
    numpy. `normalized`: the text is already `normalize(text, text_format)` (dedup's map step needs both)."""
    norm = text if normalized else normalize(text, text_format)
    unit, n = script_unit(norm, lang, text_format)
    if unit == "chars":
        chars = norm.replace(" ", "")
        if not chars:
            return np.empty(0, dtype=np.uint64)
        units = mix64(np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64) + _GOLDEN)
        return np.unique(_ngram_hashes(units, n))
    words = norm.split()
    if not words:
        return np.empty(0, dtype=np.uint64)
    units = np.fromiter((xxhash.xxh3_64_intdigest(w) for w in words), dtype=np.uint64, count=len(words))
    return np.unique(_ngram_hashes(units, n))
