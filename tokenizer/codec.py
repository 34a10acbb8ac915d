"""Lossless encode/decode for any Python string, lone surrogates included.

A byte-level BPE can represent every byte sequence, but `tokenizers` only accepts valid Unicode.
Python strings can hold lone surrogates (U+D800-U+DFFF), e.g. text read with
`errors="surrogateescape"` or cut from UTF-16 data. Here those are encoded as their
"surrogatepass" bytes (ED A0 80 ... as CESU/WTF-8 writes them), one byte token each, and decoding
turns the bytes back into the same surrogates; valid text goes through the tokenizer unchanged.
So `decode(tokenizer, encode(tokenizer, text)) == text` for every `str` (tests/tokenizer/test_codec.py,
a hypothesis property test).

    from crawlmill.tokenizer.codec import encode, decode
"""

from __future__ import annotations

import re

from tokenizers import Tokenizer

from crawlmill.bytelevel import BYTE_TO_CHAR, CHAR_TO_BYTE

_SURROGATES = re.compile("[\ud800-\udfff]+")


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of `text` without added BOS/EOS; lone surrogates become byte tokens."""
    if not _SURROGATES.search(text):
        return tokenizer.encode(text, add_special_tokens=False).ids
    ids: list[int] = []
    position = 0
    for match in _SURROGATES.finditer(text):
        if match.start() > position:
            ids.extend(tokenizer.encode(text[position : match.start()], add_special_tokens=False).ids)
        for byte in match.group().encode("utf-8", "surrogatepass"):
            token_id = tokenizer.token_to_id(BYTE_TO_CHAR[byte])
            if token_id is None:
                raise ValueError(f"the tokenizer has no byte token for 0x{byte:02x}: not a byte-level BPE")
            ids.append(token_id)
        position = match.end()
    if position < len(text):
        ids.extend(tokenizer.encode(text[position:], add_special_tokens=False).ids)
    return ids


def decode_bytes(tokenizer: Tokenizer, ids: list[int]) -> bytes:
    """The exact bytes the ids stand for (special tokens as their literal text)."""
    specials = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    out = bytearray()
    for token_id in ids:
        token = tokenizer.id_to_token(token_id)
        if token is None:
            raise ValueError(f"token id {token_id} is not in the vocabulary (size {tokenizer.get_vocab_size()})")
        if token in specials:
            out += token.encode("utf-8")
        else:
            out += bytes(CHAR_TO_BYTE[char] for char in token)
    return bytes(out)


def decode(tokenizer: Tokenizer, ids: list[int]) -> str:
    """Inverse of `encode`; bytes that are not valid UTF-8 (e.g. a cut sequence) become U+FFFD."""
    data = decode_bytes(tokenizer, ids)
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace")
