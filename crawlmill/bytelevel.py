"""GPT-2's byte-level alphabet (`bytes_to_unicode`): the printable character that stands for each byte
in a byte-level BPE vocabulary, the one the `tokenizers` library's ByteLevel pre-tokenizer and
decoder use.

Pure Python (no `tokenizers` import), so that the shard reader (crawlmill.shards.tokenbytes: bytes
per token id) and the tokenizer's lossless codec (crawlmill.tokenizer.codec) share one table;
tests/shards/test_tokenbytes.py checks it equals `tokenizers.pre_tokenizers.ByteLevel.alphabet()`.

    from crawlmill.bytelevel import BYTE_TO_CHAR, CHAR_TO_BYTE
    bytes(CHAR_TO_BYTE[c] for c in "Ġhello")  # b" hello"
"""

from __future__ import annotations


def _byte_to_char() -> dict[int, str]:
    # Printable Latin-1 bytes stand for themselves; the other 68 bytes get the code points from
    # 256 on, in byte order (GPT-2's encoder.py).
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


BYTE_TO_CHAR: dict[int, str] = _byte_to_char()
CHAR_TO_BYTE: dict[str, int] = {char: byte for byte, char in BYTE_TO_CHAR.items()}
