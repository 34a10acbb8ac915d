"""The tokenizer side of packing: load any Hugging Face tokenizer folder and encode documents in batches.

A folder needs `tokenizer.json` (the `tokenizers` library's format); `tokenizer_config.json` names
the end-of-document token (`eos_token`, a string or an AddedToken dict), as Megatron-LM's
`tools/preprocess_data.py` reads it; `--eod-token` names it otherwise. `crawlmill.json` (written by
`crawlmill tokenizer train`) may give `padded_vocab_size`.

Encoding gives the ids of `Tokenizer.encode_batch_fast(texts, add_special_tokens=False)`: no BOS or
other template tokens, which is what preprocess_data.py writes (Megatron's HuggingFaceTokenizer
turns text into `tokenize()` tokens and their ids, never adding special tokens), then one EOD per
document. For DeepSeek-style tokenizers the same ids come from `tokenizer/fastencode.py` (text cut
where the pre-tokenizer must cut, short cuts encoded once), several times faster on English.

    from crawlmill.pipeline.pack.tokenizer import load_tokenizer
    tok = load_tokenizer("path/to/tokenizer_dir")
    tokens, lengths = tok.encode_documents(["first document", "second"])
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from crawlmill.files import as_path, sha256_file
from crawlmill.local_cache import local_copy

# Megatron-Core's DType.optimal_dtype: uint16 below 65,500 entries, else int32.
UINT16_LIMIT = 65500
VOCAB_MULTIPLE = 128  # Megatron's default --make-vocab-size-divisible-by
PARALLELISM = "TOKENIZERS_PARALLELISM"


class TokenizerError(ValueError):
    """The tokenizer folder cannot be used for packing (the message says why)."""


def optimal_dtype(vocab_size: int) -> type[np.integer]:
    """The token dtype Megatron-Core picks for a vocabulary (`DType.optimal_dtype`)."""
    return np.uint16 if vocab_size < UINT16_LIMIT else np.int32


def _token_content(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


@dataclass
class TokenizerInfo:
    """What the packer and the manifest need to know about a tokenizer folder (picklable)."""

    path: str
    sha256: str  # of tokenizer.json's bytes
    vocab_size: int  # with added tokens: the number Megatron's HuggingFaceTokenizer reports
    padded_vocab_size: int
    padded_from: str  # crawlmill.json, --padded-vocab-size or rounded up to a multiple of 128
    eod_id: int
    eod_token: str
    dtype: str  # "uint16" or "int32"
    fast_encode_unsupported: str | None = None  # why tokenizer/fastencode.py cannot serve it; None: it can

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def inspect_tokenizer_dir(
    tokenizer_dir: Any, eod_token: str | None = None, padded_vocab_size: int | None = None
) -> TokenizerInfo:
    """Read a tokenizer folder and settle EOD, vocabulary sizes and dtype; TokenizerError if unusable."""
    from tokenizers import Tokenizer

    from ...tokenizer.fastencode import unsupported_reason

    folder = as_path(tokenizer_dir)
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(f"{folder}: no tokenizer.json (a Hugging Face tokenizer folder is needed)")
    try:
        tokenizer = Tokenizer.from_file(str(local_copy(path)))
    except Exception as exc:  # the library's message names what is wrong with the file
        raise TokenizerError(f"{path}: cannot be loaded by the tokenizers library: {exc}") from None
    config = _read_json(folder / "tokenizer_config.json")
    if eod_token is None:
        eod_token = _token_content(config.get("eos_token"))
    if eod_token is None:
        raise TokenizerError(
            f"{folder}: tokenizer_config.json names no eos_token; give the end-of-document token with --eod-token"
        )
    eod_id = tokenizer.token_to_id(eod_token)
    if eod_id is None:
        eos = _token_content(config.get("eos_token"))
        hint = f" (its tokenizer_config.json's eos_token is {eos!r}, the default)" if eos and eos != eod_token else ""
        raise TokenizerError(f"{folder}: end-of-document token {eod_token!r} is not in the vocabulary{hint}")
    vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    from_file = _read_json(folder / "crawlmill.json").get("padded_vocab_size")
    if from_file is not None and padded_vocab_size is not None and int(from_file) != padded_vocab_size:
        raise TokenizerError(
            f"--padded-vocab-size {padded_vocab_size} disagrees with {folder / 'crawlmill.json'} ({from_file})"
        )
    if from_file is not None:
        padded, padded_from = int(from_file), "crawlmill.json"
    elif padded_vocab_size is not None:
        padded, padded_from = padded_vocab_size, "--padded-vocab-size"
    else:
        padded = -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
        padded_from = f"vocabulary size rounded up to a multiple of {VOCAB_MULTIPLE}"
    if padded < vocab_size:
        raise TokenizerError(f"padded vocabulary size {padded} ({padded_from}) is below the vocabulary size {vocab_size}")
    return TokenizerInfo(
        path=str(folder),
        sha256=sha256_file(path),
        vocab_size=vocab_size,
        padded_vocab_size=padded,
        padded_from=padded_from,
        eod_id=eod_id,
        eod_token=eod_token,
        dtype=np.dtype(optimal_dtype(vocab_size)).name,
        fast_encode_unsupported=unsupported_reason(tokenizer),
    )


def _read_json(path: Any) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{path}: not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{path}: expected a JSON object")
    return data


class DocumentEncoder:
    """Encodes batches of documents into one flat token array plus per-document lengths (EOD included)."""

    def __init__(self, info: TokenizerInfo, threads: int | None = 1, fast: bool = True, special_as_text: bool = False) -> None:
        from tokenizers import Tokenizer

        from ...tokenizer.fastencode import ChunkedEncoder, unsupported_reason

        # One Rust thread per Ray task by default: a task holds one CPU, and parallelism comes from
        # tasks. tokenizers reads TOKENIZERS_PARALLELISM on every batch call, so it is set around
        # each call only (the rest of the process keeps its own setting).
        self.parallelism = None if threads is None else ("true" if threads > 1 else "false")
        self.info = info
        self.dtype = np.dtype(info.dtype)
        local = local_copy(as_path(info.path) / "tokenizer.json")  # a URL's file: copied once per node
        self.tokenizer = Tokenizer.from_file(str(local))
        if sha256_file(local) != info.sha256:
            raise TokenizerError(f"{info.path}/tokenizer.json changed since the pack run started")
        # A special token's spelling in a text is that token unless this is set (PackConfig.special_tokens_in_text);
        # ChunkedEncoder hands such texts to this tokenizer whole, so both paths follow it.
        self.tokenizer.encode_special_tokens = special_as_text
        contents = sorted({t.content for t in self.tokenizer.get_added_tokens_decoder().values() if t.special and t.content}, key=len, reverse=True)
        self.special = re.compile("|".join(map(re.escape, contents))) if contents else None
        # Why the faster exact path is not used (None when it is).
        self.chunked_off = "turned off" if not fast else unsupported_reason(self.tokenizer)
        self.chunked = None if self.chunked_off else ChunkedEncoder(self.tokenizer, self.dtype)

    def count_special(self, texts: list[str]) -> int:
        """How many of the texts spell a special token."""
        return 0 if self.special is None else sum(1 for text in texts if self.special.search(text))

    def encode_documents(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of every text followed by EOD, concatenated; and each document's length.

        A text that encodes to nothing (the empty string) gets length 0 and no EOD, as in
        preprocess_data.py; the caller decides what to do with it.
        """
        previous = os.environ.get(PARALLELISM)
        if self.parallelism is not None:
            os.environ[PARALLELISM] = self.parallelism
        try:
            if self.chunked is not None:
                return self._join(self.chunked.encode(texts))
            encodings = self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        finally:
            if previous is None:
                os.environ.pop(PARALLELISM, None)
            else:
                os.environ[PARALLELISM] = previous
        lengths = np.fromiter((len(e) for e in encodings), dtype=np.int64, count=len(encodings))
        lengths += lengths > 0  # room for the EOD of every non-empty document
        out = np.empty(int(lengths.sum()), dtype=self.dtype)
        end = 0
        for encoding, length in zip(encodings, lengths.tolist()):
            if length:
                out[end : end + length - 1] = encoding.ids
                out[end + length - 1] = self.info.eod_id
                end += length
        return out, lengths.astype(np.int32)

    def _join(self, documents: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        eod = np.array([self.info.eod_id], dtype=self.dtype).tobytes()
        lengths = np.fromiter(map(len, documents), dtype=np.int64, count=len(documents)) // self.dtype.itemsize
        lengths += lengths > 0
        joined = b"".join([part for ids in documents if ids for part in (ids, eod)])
        return np.frombuffer(joined, dtype=self.dtype), lengths.astype(np.int32)
