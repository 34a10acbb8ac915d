"""Exact bytes per token: how many UTF-8 bytes of document text each token id stands for, so that
bits per byte of any token window is exact, not estimated.

    from crawlmill.shards.tokenbytes import token_byte_lengths, sequence_bytes
    table = token_byte_lengths("out/tokenizer/tokenizer.json", eod_id=manifest["tokenizer"]["eod_id"])
    bpb = loss_nats_sum / math.log(2) / sequence_bytes(window_ids, table)

What a byte is: `document_bytes` (pack's `bytes` column of shard-NNNNN.docs.parquet and the
manifest's byte totals) counts `len(text.encode("utf-8", "surrogatepass"))`: a lone surrogate
counts the 3 bytes crawlmill.tokenizer.codec encodes it as (one byte token each); Parquet text is
valid UTF-8, so for packed documents this is plain UTF-8.

How the table is made, for a byte-level BPE (`tokenizer.json`, read as JSON: no `tokenizers` needed):
- a vocabulary token is a string over GPT-2's byte alphabet (crawlmill.bytelevel); its length in
  bytes is its length in characters, each character standing for one byte;
- an added token (BOS, FIM, chat, ...) counts the UTF-8 bytes of its content: pack appends the
  end-of-document token and nothing else, so any other added token in a shard is there because the
  document's text spells it (the library matches added tokens in text, as preprocess_data.py does),
  and those bytes are in the document's byte count;
- the end-of-document token (`eod_id`; default: `tokenizer_config.json`'s eos_token beside the file,
  the one pack appends) counts 0: it is not document text.
So for every packed document, the table summed over its tokens equals its `bytes`, with one
exception no per-token table can avoid: a text that spells the EOD token itself (its id is then the
same as an appended EOD's) counts that many bytes too few (tests/pipeline/pack/test_bytes.py).

`token_byte_lengths` refuses (TokenBytesError, a ValueError saying why) a tokenizer whose token
strings are not exactly the text's bytes: a normalizer (the text is changed before splitting), a
decoder or pre-tokenizer other than ByteLevel (add_prefix_space adds a byte), a model other than BPE
on the full byte alphabet (byte fallback, word prefixes/suffixes, missing byte symbols), or added
tokens that strip the whitespace around them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from crawlmill.bytelevel import CHAR_TO_BYTE


# Bytes that occur in UTF-8 text (surrogatepass included): all but C0, C1 and F5-FF, which the
# released DeepSeek vocabulary leaves out; every one of these must be a token of its own.
UTF8_BYTES = frozenset(range(256)) - {0xC0, 0xC1, *range(0xF5, 0x100)}


class TokenBytesError(ValueError):
    """Bytes per token would not be exact for this tokenizer (the message says why)."""


def document_bytes(texts: Iterable[str]) -> np.ndarray:
    """Each text's UTF-8 byte count (int64), lone surrogates as their 3 "surrogatepass" bytes."""
    return np.fromiter((len(text.encode("utf-8", "surrogatepass")) for text in texts), dtype=np.int64)


def _is_empty_normalizer(normalizer: Any) -> bool:
    return normalizer is None or normalizer == {"type": "Sequence", "normalizers": []}


def _steps(component: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """A pre-tokenizer or decoder as its list of steps (a Sequence's, or itself)."""
    if component is None:
        return []
    return list(component.get(key, [])) if component.get("type") == "Sequence" else [component]


def _check(spec: dict[str, Any], path: Path) -> None:
    """TokenBytesError unless token strings are exactly the bytes of the text they came from."""

    def refuse(reason: str) -> TokenBytesError:
        return TokenBytesError(f"{path}: bytes per token would not be exact: {reason}")

    if not _is_empty_normalizer(spec.get("normalizer")):
        raise refuse(f"it has a normalizer ({spec['normalizer'].get('type')}), which changes the text before it is split")
    decoder = spec.get("decoder") or {}
    if decoder.get("type") != "ByteLevel":
        raise refuse(f"its decoder is {decoder.get('type')}, not ByteLevel")
    byte_level = [s for s in _steps(spec.get("pre_tokenizer"), "pretokenizers") if s.get("type") == "ByteLevel"]
    if not byte_level:
        raise refuse("its pre-tokenizer has no ByteLevel step: tokens are not strings of bytes")
    if any(s.get("add_prefix_space") for s in byte_level):
        raise refuse("its ByteLevel pre-tokenizer adds a space before the text (add_prefix_space)")
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise refuse(f"its model is {model.get('type')}, not BPE")
    if model.get("byte_fallback") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        raise refuse("its BPE has byte fallback or a word prefix/suffix: token strings are not only bytes")
    missing = [byte for char, byte in CHAR_TO_BYTE.items() if byte in UTF8_BYTES and char not in model.get("vocab", {})]
    if missing:
        raise refuse(f"byte(s) {', '.join(f'0x{b:02x}' for b in sorted(missing)[:8])} occur in UTF-8 but are not tokens")
    stripping = [t["content"] for t in spec.get("added_tokens", []) if t.get("lstrip") or t.get("rstrip")]
    if stripping:
        raise refuse(f"added token(s) {stripping[:3]} strip the whitespace around them, which then has no token")


def _eod_from_config(path: Path, ids: dict[str, int]) -> int:
    config_path = path.parent / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    eos = config.get("eos_token")
    content = eos.get("content") if isinstance(eos, dict) else eos
    if not isinstance(content, str) or content not in ids:
        raise TokenBytesError(
            f"{path}: no end-of-document token known ({config_path} names no eos_token in the vocabulary); "
            "give eod_id (a pack manifest's tokenizer.eod_id)"
        )
    return ids[content]


def token_byte_lengths(tokenizer_json_path: str | Path, eod_id: int | None = None) -> np.ndarray:
    """Bytes of document text per token id (int64, one entry per id up to the largest: the vocabulary
    size); see the module docstring. TokenBytesError if they would not be exact for this tokenizer."""
    path = Path(tokenizer_json_path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenBytesError(f"{path}: not a readable tokenizer.json: {exc}") from None
    _check(spec, path)
    vocab: dict[str, int] = spec["model"]["vocab"]
    added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    ids = {**vocab, **added}  # an added token takes precedence, as in the library
    table = np.zeros(max(ids.values()) + 1, dtype=np.int64)
    for token, token_id in vocab.items():
        if any(c not in CHAR_TO_BYTE for c in token):
            raise TokenBytesError(f"{path}: vocabulary token {token!r} has characters outside the byte alphabet")
        table[token_id] = len(token)  # one character per byte
    for content, token_id in added.items():
        table[token_id] = len(content.encode("utf-8"))
    eod = _eod_from_config(path, ids) if eod_id is None else eod_id
    if not 0 <= eod < len(table):
        raise TokenBytesError(f"{path}: eod_id {eod} is not a token id (0..{len(table) - 1})")
    table[eod] = 0
    return table


def sequence_bytes(token_ids: Any, table: np.ndarray) -> int:
    """Bytes of document text the token ids stand for (sum of the table over them); ValueError for an
    id outside the table (a negative id would otherwise index from the end)."""
    ids = np.asarray(token_ids)
    if ids.size == 0:
        return 0
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= len(table):
        raise ValueError(f"token id {low if low < 0 else high} is outside the table (0..{len(table) - 1})")
    return int(table[ids].sum())
