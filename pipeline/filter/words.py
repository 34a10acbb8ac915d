"""Word tokenizers per language, as datatrove `WordTokenizer`s so datatrove's filter classes use them.

- Chinese: jieba directly. datatrove's own Chinese choice ("cmn": spaCy's Chinese tokenizer over
  jieba) gives the same segmentation ~2x slower; "zh" silently gives whole sentences as words,
  and "zho" whitespace splitting (../shared/docs/ENVIRONMENT.md). Its English tokenizer, the
  default of every datatrove filter, treats a Chinese sentence as one word. Sentences end at
  。！？ and at the ． and . that technical writing uses instead (ZH_SENTENCE_END below).
- English: `RegexWordTokenizer` (ours): words, numbers and single punctuation marks as spaCy's blank
  English tokenizer splits them, and sentences at . ! ? — measured ~20x faster than datatrove's
  spaCy tokenizer with the same filter decisions on clean and junk text (BENCHMARKS.md,
  tests/pipeline/filter/test_words.py).
- Other languages: datatrove's assigned tokenizer.

Every tokenizer is wrapped in `LastTextMemo`: datatrove's Gopher quality, Gopher repetition and
FineWeb filters each tokenize the same document again; the memo makes that one tokenization.
Its words are lowercased, so that "Cheap flights" and "cheap flights" are one n-gram to the
repetition rules (keyword spam capitalises at random) and a sentence-initial "The" is a stop word.
"""

from __future__ import annotations

import re
from functools import lru_cache

from datatrove.utils.word_tokenizers import WordTokenizer, load_tokenizer_assignments, load_word_tokenizer


class SentencesByRegex(WordTokenizer):
    """Sentences end where `SENTENCE_END` matches (terminal punctuation with closing quotes, or a line break)."""

    SENTENCE_END: re.Pattern

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for match in self.SENTENCE_END.finditer(text):
            if text[start : match.end()].strip():
                spans.append((start, match.end()))
            start = match.end()
        if text[start:].strip():
            spans.append((start, len(text)))
        return spans

    def sent_tokenize(self, text: str) -> list[str]:
        return [text[a:b].strip() for a, b in self.span_tokenize(text)]


# Chinese technical writing (abstracts, reports, standards) ends sentences with the full-width ．
# or the ASCII . instead of 。. ． ends one unless it is a decimal point between digits (People's
# Daily writes １１０．８). . ends one after a Chinese character, closing bracket, quote or percent
# sign ("保护.2009年"), and after anything else only when Chinese (or an opening quote or bracket),
# a line break or the end of the text follows: so not in 3.14, v2.3.1, www.example.org.cn or
# "Fig. 3", nor after the abbreviations below ("Zhang et al.提出").
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CLOSERS = "[”’」』）)\"']*"
_ZH_NEXT = rf"[ \t]*(?:[{_CJK}“‘「『（(《【]|\n|$)"
_ABBREVIATIONS = ("al", "e.g", "i.e", "cf", "vs", "Fig", "fig", "Eq", "No", "Vol", "pp", "Dr", "Mr", "Ms", "Prof")
_NOT_ABBREVIATION = "".join(rf"(?<!\b{re.escape(a)})" for a in _ABBREVIATIONS)
ZH_SENTENCE_END = re.compile(
    rf"[。！？!?…]+{_CLOSERS}"
    rf"|(?:(?<![0-9０-９])．+|．+(?![0-9０-９])){_CLOSERS}"
    rf"|(?=\.)(?<=[{_CJK}）)”’」』》%％])\.+{_CLOSERS}"
    rf"|(?=\.){_NOT_ABBREVIATION}\.+{_CLOSERS}(?={_ZH_NEXT})"  # (?=\.) first: lookbehinds only at a . (5x faster)
    r"|\n+"
)


class JiebaWordTokenizer(SentencesByRegex):
    SENTENCE_END = ZH_SENTENCE_END

    def __init__(self) -> None:
        super().__init__("zh")
        self._jieba = None

    @property
    def jieba(self):  # noqa: ANN201 - the jieba module, loaded on first use (0.7 s dictionary load)
        if self._jieba is None:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            jieba.initialize()
            self._jieba = jieba
        return self._jieba

    def word_tokenize(self, text: str) -> list[str]:
        return [w for w in self.jieba.lcut(text) if not w.isspace()]


class RegexWordTokenizer(SentencesByRegex):
    _WORD = re.compile(r"\w+(?:['’.-]\w+)*|[^\w\s]")
    SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)|\n+")

    def __init__(self, language: str = "en") -> None:
        super().__init__(language)

    def word_tokenize(self, text: str) -> list[str]:
        return self._WORD.findall(text)


class LastTextMemo(WordTokenizer):
    """Remembers the words of the last text it tokenized (by identity: the same document object)."""

    def __init__(self, inner: WordTokenizer) -> None:
        super().__init__(inner.language)
        self.inner = inner
        self._text: str | None = None
        self._words: list[str] = []

    def word_tokenize(self, text: str) -> list[str]:
        if text is not self._text:
            self._words = [w.lower() for w in self.inner.word_tokenize(text)]
            self._text = text
        return self._words

    def sent_tokenize(self, text: str) -> list[str]:
        return self.inner.sent_tokenize(text)

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return self.inner.span_tokenize(text)


@lru_cache(maxsize=None)
def word_tokenizer(lang: str) -> LastTextMemo:
    """The tokenizer for an ISO 639-1 language code (as our language ID reports it)."""
    if lang == "zh":
        return LastTextMemo(JiebaWordTokenizer())
    if lang == "en":
        return LastTextMemo(RegexWordTokenizer())
    if lang not in load_tokenizer_assignments():
        raise ValueError(
            f"no word tokenizer for {lang}: datatrove assigns none to it (its tokenizer_assignment.csv), and the "
            f"rules count words with one; keep {lang} only with every rule family of rules.{lang} set to null"
        )
    return LastTextMemo(load_word_tokenizer(lang))


def check_tokenizer(lang: str) -> None:
    """Fail now, not in a worker, where `lang` has no word tokenizer or its tokenizer's package is
    missing: datatrove checks some packages when the tokenizer is made and imports others (spaCy's
    Japanese needs SudachiPy) at its first text, so one short text goes through it. Our own two
    (English, Chinese) need nothing beyond the project's dependencies."""
    if lang in ("en", "zh"):
        return
    try:
        tokenizer = word_tokenizer(lang).inner
        tokenizer.word_tokenize("Check, one two.")
        tokenizer.sent_tokenize("Check, one two. Three four.")
    except ImportError as exc:
        raise ValueError(f"the word tokenizer datatrove assigns to {lang} needs a package that is not installed: {exc}") from None
    except ValueError:  # none assigned (word_tokenizer's own message)
        raise
    except Exception as exc:  # noqa: BLE001 - whatever it is, it would fail every worker the same way
        raise ValueError(f"the word tokenizer datatrove assigns to {lang} fails: {type(exc).__name__}: {exc}") from None
