"""How a document becomes a fastText input line, the same at training and at scoring time.

- `crawlmill` (our models): lowercased; English (and every language written with spaces) split into
  words and single punctuation marks; Chinese segmented into words with jieba (fastText splits on
  spaces only, and a Chinese sentence has none: unsegmented, a whole clause would be one "word" that
  never repeats — Ultra-FineWeb segments too); whitespace and line breaks collapsed. Long documents
  are cut at `MAX_CHARS`: the first 20,000 characters say enough about quality, and scoring time
  stays bounded per document.
- `newlines` (DCLM's released classifier and datatrove's FastTextClassifierFilter): line breaks
  become spaces, nothing else changes.

    prepare("Hello, World!\\nSecond line.", "en", "crawlmill") == "hello , world ! second line ."
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_CHARS = 20_000
_WORDS = re.compile(r"\w+|[^\w\s]")


@lru_cache(maxsize=1)
def _jieba():  # noqa: ANN202 - the jieba module, dictionary loaded once per process
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def prepare(text: str, lang: str | None, normalize: str = "crawlmill") -> str:
    if normalize == "newlines":
        return text.replace("\n", " ")
    text = text[:MAX_CHARS].lower()
    if lang == "zh":
        return " ".join(w for w in _jieba().lcut(text) if not w.isspace())
    return " ".join(_WORDS.findall(text))
