"""Exact, faster encoding for DeepSeek-style tokenizers: cut the text where the pre-tokenizer must
cut, and encode each distinct short cut once.

Why: on DeepSeek's tokenizer the `tokenizers` library spends most of its time on per-word work (a
normalized string with byte alignments per piece, the byte-level mapping, an Encoding holding a
string per token), about 1 MB/s per core on English. Words repeat (Zipf), so most of that work is
done again and again for the same few thousand words.

Why it is exact: DeepSeek's pre-tokenizer is a Sequence whose first two steps are isolated splits
on `[\\r\\n]` and on `\\s?[LETTERS]+`. Every later step (punctuation, trailing space, CJK runs,
digits, byte mapping) and the BPE model see one piece of the pieces those two splits give at a
time: nothing after them can join text across a piece boundary. So cutting a text before and after
every `\\r`, `\\n` and every letter run (with its one leading space), then encoding each cut with
the same tokenizer, gives exactly the ids of encoding the whole text. The cuts are found here with
Python's `re` from the same two patterns (onig's `\\s` written out: tests probe the library for it).
Within a cut those two splits find nothing to do (a cut has no line break, and a letter cut is one
match), so cuts go to the same model behind the later steps only. Added tokens are split out by
the library before pre-tokenization, so a text holding an added token's content is encoded whole
by the tokenizer itself. tests/tokenizer/test_fastencode.py compares the ids with
`Tokenizer.encode` on generated text from every character class involved (with a vocabulary whose
merges span every cut, so that a wrong cut cannot hide) and on real text.

Short cuts (words with their leading space, punctuation runs) are memoized; long ones go to the
tokenizer at every occurrence, so a corpus of repeated paragraphs (a resampled benchmark corpus)
is no faster than one without repeats. The memo is bounded and only ever caches a pure function,
so output never depends on what it holds. English gains 4-5x; Chinese gains nothing (a Chinese
paragraph has no letters, so it is one long cut, and BPE on it is most of the time).

    from tokenizers import Tokenizer
    from crawlmill.tokenizer.fastencode import ChunkedEncoder
    enc = ChunkedEncoder(Tokenizer.from_file("tok/tokenizer.json"), "int32")
    [ids_bytes] = enc.encode(["Hello, 世界!"])   # np.frombuffer(ids_bytes, "int32")
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from tokenizers import models, pre_tokenizers

from .pretokenize import CUT_PATTERN, text_splits

# Later pre-tokenizer steps known to act on each piece alone (Metaspace, for one, does not: it
# treats the first piece differently).
PER_PIECE_STEPS = {"Split", "Digits", "ByteLevel"}


@dataclass
class ChunkCacheConfig:
    max_chunk_chars: int = 16  # memoize cuts up to this long: words, not phrases or paragraphs
    max_entries: int = 1 << 19  # then start over (about 70 MB for word-length cuts)


def _state(component: Any) -> dict[str, Any] | None:
    return None if component is None else json.loads(component.__getstate__())


def unsupported_reason(tokenizer: Any) -> str | None:
    """Why cutting would not be exact for this tokenizer, or None when it is."""
    normalizer = _state(tokenizer.normalizer)
    if normalizer is not None and normalizer != {"type": "Sequence", "normalizers": []}:
        return "it has a normalizer"
    if tokenizer.truncation is not None or tokenizer.padding is not None:
        return "it truncates or pads"
    if not isinstance(tokenizer.model, models.BPE) or tokenizer.model.dropout not in (None, 0.0):
        return "its model is not BPE without dropout"
    pre = _state(tokenizer.pre_tokenizer)
    steps = pre.get("pretokenizers", []) if pre and pre.get("type") == "Sequence" else []
    expected = [_state(step) for step in text_splits()[:2]]
    if steps[:2] != expected:
        return "its pre-tokenizer does not start with DeepSeek's line and letter splits"
    if any(step.get("type") not in PER_PIECE_STEPS for step in steps[2:]):
        return "a later pre-tokenizer step may look across pieces"
    return None


def _without_first_splits(tokenizer: Any) -> Any:
    """The same model (shared, not copied) behind the pre-tokenizer's later steps only; no added
    tokens, which is right for cuts: a text holding one is never cut."""
    from tokenizers import Tokenizer

    steps = tokenizer.pre_tokenizer
    cut = Tokenizer(tokenizer.model)
    cut.pre_tokenizer = pre_tokenizers.Sequence([steps[i] for i in range(2, len(_state(steps)["pretokenizers"]))])
    return cut


class ChunkedEncoder:
    """Token ids of texts as `tokenizer.encode(text, add_special_tokens=False)` gives them, faster."""

    def __init__(self, tokenizer: Any, dtype: str | np.dtype, config: ChunkCacheConfig | None = None) -> None:
        reason = unsupported_reason(tokenizer)
        if reason:
            raise ValueError(f"cannot cut text for this tokenizer: {reason}")
        self.tokenizer = tokenizer
        self.cut_tokenizer = _without_first_splits(tokenizer)
        self.dtype = np.dtype(dtype)
        self.config = config or ChunkCacheConfig()
        self.memo: dict[str, bytes] = {}
        contents = sorted({t.content for t in tokenizer.get_added_tokens_decoder().values() if t.content}, key=len, reverse=True)
        self.added = re.compile("|".join(map(re.escape, contents))) if contents else None
        self.counts = {"texts_whole": 0, "chunks": 0, "chunks_encoded": 0}

    def _ids_bytes(self, texts: list[str], tokenizer: Any) -> list[bytes]:
        encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=self.dtype).tobytes() for e in encodings]

    def encode(self, texts: list[str]) -> list[bytes]:
        """Each text's token ids (no EOD) as bytes of `dtype`."""
        whole = [i for i, text in enumerate(texts) if self.added is not None and self.added.search(text)]
        out: list[bytes] = [b""] * len(texts)
        if whole:
            self.counts["texts_whole"] += len(whole)
            for i, ids in zip(whole, self._ids_bytes([texts[i] for i in whole], self.tokenizer)):
                out[i] = ids
        skip = set(whole)
        chunked = [(i, CUT_PATTERN.findall(text)) for i, text in enumerate(texts) if i not in skip]
        memo = self.memo
        if len(memo) >= self.config.max_entries:
            memo.clear()  # before looking anything up: the batch's own cuts stay until it is joined
        limit = self.config.max_chunk_chars
        occurrences = Counter(chain.from_iterable(chunks for _, chunks in chunked))
        new = [c for c in occurrences if c not in memo]
        short = [c for c in new if len(c) <= limit]
        long = [c for c in new if len(c) > limit for _ in range(occurrences[c])]  # as if never repeated
        if short or long:
            memo.update(zip(short + long, self._ids_bytes(short + long, self.cut_tokenizer)))
        self.counts["chunks"] += sum(occurrences.values())
        self.counts["chunks_encoded"] += len(short) + len(long)
        lookup = memo.__getitem__
        for i, chunks in chunked:
            out[i] = b"".join(map(lookup, chunks))
        for key in long:
            memo.pop(key, None)
        return out
