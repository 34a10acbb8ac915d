"""The vocabulary layout: learned tokens, the 15 special tokens and the padded model vocabulary.

DeepSeek LLM: 100,000 learned byte-level BPE tokens (ids 0-99,999, the 256 byte symbols included),
then 15 special tokens (ids 100,000-100,014), and a model vocabulary padded to 102,400 so the
embedding splits evenly across tensor-parallel ranks. The release names only BOS and EOS; the other
13 are ours, in this order (ids with the default 100,000 learned tokens):

| id | token | use |
|---|---|---|
| 100000 | `<｜begin▁of▁sentence｜>` | BOS |
| 100001 | `<｜end▁of▁sentence｜>` | EOS, the end-of-document token appended by `crawlmill pack` |
| 100002 | `<｜pad▁token｜>` | padding |
| 100003 | `<｜fim▁begin｜>` | fill-in-the-middle: prefix starts |
| 100004 | `<｜fim▁hole｜>` | fill-in-the-middle: the hole |
| 100005 | `<｜fim▁end｜>` | fill-in-the-middle: suffix ends, middle follows |
| 100006 | `<｜User｜>` | chat: user turn |
| 100007 | `<｜Assistant｜>` | chat: assistant turn |
| 100008 | `<｜end▁of▁turn｜>` | chat: end of a turn |
| 100009-100014 | `<｜reserved▁0｜>`-`<｜reserved▁5｜>` | reserved |

BOS and EOS are spelled exactly as in the release (fullwidth bars U+FF5C, U+2581 for spaces), so
text and chat templates written for DeepSeek LLM work unchanged. The padding ids (100,015-102,399)
are in no file but `crawlmill.json`: they are embedding rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜pad▁token｜>"
SPECIAL_TOKENS: tuple[str, ...] = (
    BOS,
    EOS,
    PAD,
    "<｜fim▁begin｜>",
    "<｜fim▁hole｜>",
    "<｜fim▁end｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<｜end▁of▁turn｜>",
    *(f"<｜reserved▁{i}｜>" for i in range(6)),
)
assert len(SPECIAL_TOKENS) == 15

DEEPSEEK_LEARNED = 100_000
DEEPSEEK_PADDED = 102_400
PAD_MULTIPLE = 128  # for vocabularies other than DeepSeek's own


@dataclass(frozen=True)
class VocabLayout:
    learned: int = DEEPSEEK_LEARNED
    padded: int | None = None  # None: 102,400 for 100,000 learned, else rounded up to 128

    def __post_init__(self) -> None:
        if self.learned < 257:
            raise ValueError(f"vocab_size {self.learned}: must exceed the 256 byte symbols")
        if self.padded is not None and self.padded < self.total:
            raise ValueError(f"padded_vocab_size {self.padded} is smaller than {self.total} (learned + 15 specials)")

    @property
    def total(self) -> int:
        return self.learned + len(SPECIAL_TOKENS)

    @property
    def padded_size(self) -> int:
        if self.padded is not None:
            return self.padded
        if self.learned == DEEPSEEK_LEARNED:
            return DEEPSEEK_PADDED
        return -(-self.total // PAD_MULTIPLE) * PAD_MULTIPLE

    def special_ids(self) -> dict[str, int]:
        return {token: self.learned + i for i, token in enumerate(SPECIAL_TOKENS)}
