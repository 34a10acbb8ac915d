"""fastText supervised inference, batched in numpy: fastText's own probabilities, faster.

Measured (bench/quality_bench.py): fastText's `predict` spends most of a web page's time reading it
character by character through a C++ stream. Here a batch of documents is scored at once: each
document's UTF-8 bytes are split on fastText's separators in one C call, every token's word id and
hash come from a per-process memo (most tokens repeat; a new one is hashed once), the word n-gram
ids are made with vectorised integer arithmetic over the whole batch, and the embedding rows are
summed by two sparse matrix products (documents x rows) with the model's input matrix, used in place:
a view of fastText's own memory, not a copy, so a node step's forked processes share it.

Exactly fastText's algorithm (Dictionary::getLine, addWordNgrams, pushHash, computeHidden, predict):
- tokens: the line split on ' ', '\\t', '\\v', '\\f', '\\r', '\\0' (not Python's Unicode whitespace:
  an ideographic space is part of a word for fastText), then the end-of-sentence token `</s>`;
- a token's hash: 32-bit FNV-1a over its bytes, each byte sign-extended as fastText's `int8_t`;
- ids: the in-vocabulary tokens' word ids, and for every token i and j in (i, i + wordNgrams):
  h = h * 116049371 + hash[j] in 64-bit arithmetic on the sign-extended 32-bit hashes, id
  nwords + h mod bucket (out-of-vocabulary tokens take part in the n-grams only);
- hidden: the mean of those rows; output: softmax (or a sigmoid a label, loss "ova");
- a probability as fastText reports it: exp(log(p + 1e-5)), i.e. p + 1e-5.
Quantized or pruned models, subword n-grams and hierarchical softmax are refused with the reason
(`unsupported_reason`); QualityModel then calls fastText's predict. Tests compare every probability
with fastText's on English, Chinese and random Unicode text.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

EOS = b"</s>"
NGRAM_MULTIPLIER = np.uint64(116049371)
MEMO_LIMIT = 1_000_000  # tokens remembered per process (~150 bytes each: at most ~150 MB), then forgotten
FASTTEXT_EPSILON = 1e-5  # fastText reports exp(log(p + 1e-5))


def fnv1a(token: bytes) -> int:
    """fastText's Dictionary::hash: FNV-1a with each byte sign-extended (int8_t), as unsigned 32 bits."""
    h = 2166136261
    for byte in token:
        h = ((h ^ (byte | 0xFFFFFF00 if byte >= 0x80 else byte)) * 16777619) & 0xFFFFFFFF
    return h


def fnv1a_many(tokens: list[bytes]) -> np.ndarray:
    """`fnv1a` of many tokens at once (uint64 holding 32-bit values): one vector step per byte position."""
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    data = np.frombuffer(b"".join(tokens), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    h = np.full(len(tokens), 2166136261, dtype=np.uint64)
    for position in range(int(lengths.max(initial=0))):
        active = np.flatnonzero(lengths > position)
        byte = data[starts[active] + position].astype(np.uint64)
        byte = np.where(byte >= 0x80, byte | np.uint64(0xFFFFFF00), byte)
        h[active] = ((h[active] ^ byte) * np.uint64(16777619)) & np.uint64(0xFFFFFFFF)
    return h


def unsupported_reason(model: Any) -> str | None:
    args = model.f.getArgs()
    if model.f.isQuant():
        return "a quantized model"
    if args.maxn > 0:
        return "subword n-grams (maxn > 0)"
    loss = str(args.loss).split(".")[-1]
    return None if loss in ("softmax", "ova") else f"loss {loss}"


def _tokens(line: str) -> list[bytes]:
    data = line.encode("utf-8", "surrogatepass")
    if b"\x00" in data:  # fastText splits on \0 too; bytes.split() does not
        data = data.replace(b"\x00", b" ")
    tokens = data.split()
    tokens.append(EOS)
    return tokens


class FastInference:
    def __init__(self, model: Any) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"numpy inference does not cover {reason}")
        args = model.f.getArgs()
        self.model = model  # the matrices below are views of its memory: it must outlive them
        self.ngrams, self.bucket = int(args.wordNgrams), np.uint64(args.bucket)
        self.ova = str(args.loss).endswith("ova")
        self.input = np.asarray(model.f.getInputMatrix())  # a view: fastText's memory, not a copy
        self.output = np.asarray(model.f.getOutputMatrix()).astype(np.float64)
        self.labels = model.get_labels()
        words = model.get_words(on_unicode_error="replace")
        self.nwords = len(words)
        self.word_ids = {w.encode("utf-8"): i for i, w in enumerate(words)}
        # token -> (word id + 1) << 32 | hash: one int, so a batch's tokens become one array at once
        self.memo: dict[bytes, int] = {}

    def _learn(self, tokens: list[bytes]) -> None:
        """Remember new tokens' word ids and hashes (hashed together, vectorised)."""
        if len(self.memo) + len(tokens) > MEMO_LIMIT:
            self.memo.clear()
        for token, h in zip(tokens, fnv1a_many(tokens).tolist()):
            self.memo[token] = ((self.word_ids.get(token, -1) + 1) << 32) | h

    def _codes(self, flat: list[bytes]) -> np.ndarray:
        # straight into an int64 array; -1 (no code is negative) marks a token not seen yet
        codes = np.fromiter(map(self.memo.get, flat, itertools.repeat(-1)), dtype=np.int64, count=len(flat))
        missing = np.flatnonzero(codes < 0)
        if len(missing):
            self._learn(list({flat[i] for i in missing.tolist()}))
            codes[missing] = np.fromiter(map(self.memo.__getitem__, (flat[i] for i in missing.tolist())), dtype=np.int64, count=len(missing))
        return codes

    def probabilities(self, lines: list[str]) -> np.ndarray:
        """(documents, labels) probabilities as fastText's predict reports them, labels in `self.labels` order."""
        n = len(lines)
        if n == 0:
            return np.zeros((0, len(self.labels)))
        per_doc = [_tokens(line) for line in lines]
        lengths = np.fromiter(map(len, per_doc), dtype=np.int64, count=n)
        codes = self._codes(list(itertools.chain.from_iterable(per_doc)))
        wids = (codes >> 32) - 1
        hashes = ((codes & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000  # as fastText's int32, sign-extended below
        doc = np.repeat(np.arange(n), lengths)
        known = wids >= 0
        parts = [(wids[known], np.bincount(doc[known], minlength=n))]
        hashes64, grams = hashes.view(np.uint64), hashes.view(np.uint64)
        for shift in range(1, self.ngrams):
            grams = grams[:-1] * NGRAM_MULTIPLIER + hashes64[shift:]
            same = doc[: len(doc) - shift] == doc[shift:]
            ids = (grams[same] % self.bucket).astype(np.int64) + self.nwords
            parts.append((ids, np.bincount(doc[: len(doc) - shift][same], minlength=n)))
        hidden = np.zeros((n, self.input.shape[1]), dtype=np.float64)
        for ids, counts in parts:  # rows summed per document, in document order: CSR needs no sort
            indptr = np.concatenate([[0], np.cumsum(counts)])
            rows = csr_matrix((np.ones(len(ids), np.float32), ids, indptr), shape=(n, self.input.shape[0]))
            hidden += rows @ self.input
        hidden /= np.maximum(sum(counts for _, counts in parts), 1)[:, None]
        logits = hidden @ self.output.T
        if self.ova:
            probabilities = 1.0 / (1.0 + np.exp(-logits))
        else:
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        return probabilities + FASTTEXT_EPSILON
