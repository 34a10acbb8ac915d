"""Linguistic quality rules per language: datatrove's filter classes where they are right, ours where not.

| family            | English                                  | Chinese                                       |
|-------------------|------------------------------------------|-----------------------------------------------|
| gopher_repetition | datatrove GopherRepetitionFilter         | `CjkGopherRepetitionFilter` (ours, below)     |
| gopher_quality    | datatrove GopherQualityFilter            | the same class, jieba words, Chinese thresholds and stop words |
| c4                | `LongLineC4Filter` (datatrove's C4QualityFilter, below) | `CjkC4Filter` (ours, below)    |
| policy            | `PolicyBoilerplateFilter` (ours)         | the same, English and Chinese terms           |
| fineweb           | `LongLineFineWebFilter` (datatrove's FineWebQualityFilter, below) | the same, Chinese stop characters, jieba words |

Where datatrove falls short for Chinese, and why the two Cjk classes below exist: its C4QualityFilter keeps
only lines ending in ASCII . ? ! " ', counts a line's words by spaces (a Chinese line is one
"word", under its 3-word minimum) and splits sentences with an English model, so it drops
essentially every clean Chinese document (tests/pipeline/filter/test_rules.py shows it).

The two `LongLine` classes keep datatrove's rules and change only their unit for a document whose
lines are paragraphs: e-mails, reviews and forum posts often arrive as one long line, and C4's and
FineWeb's line rules then judge the whole document by that one line.

`PolicyBoilerplateFilter` exists for both languages: C4 only deletes single lines that name a
policy, so a whole privacy policy or terms-of-use page written in sentences passes every other rule.

Filters decide; they never edit text. datatrove's C4QualityFilter rewrites `doc.text` to the lines
it keeps, so it runs on a throwaway Document. A chain reports the first failing rule as
`family:reason` (e.g. `gopher_quality:gopher_short_doc`).
"""

from __future__ import annotations

import inspect
from collections import Counter
from typing import Any

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, POLICY_SUBSTRINGS
from datatrove.pipeline.filters.gopher_repetition_filter import find_duplicates
from datatrove.utils.text import PUNCTUATION_SET

from .settings import check_settings, settings_errors, show
from .words import LastTextMemo, word_tokenizer

CJK_LANGUAGES = ("zh", "ja", "ko")
# Languages written without sentence-ending marks that the default (English) rules count (Thai ends
# a sentence with a space): c4's too_few_sentences and fineweb's line_punct_ratio dropped every clean
# Thai article (measured, 2026-12-06); a kept one needs rules of its own.
NO_SENTENCE_MARKS = ("th",)
FAMILIES = ("gopher_quality", "gopher_repetition", "c4", "policy", "fineweb")
ZH_LINE_END = ("。", "！", "？", "!", "?", "．", ".", "”", "」", "』", '"', "’")  # ． and .: technical writing
POLICY_TERMS = [
    "cookie", "privacy", "personal information", "personal data", "terms of use", "terms of service",
    "terms and conditions", "this policy", "these terms",
    "隐私", "个人信息", "用户协议", "服务协议", "服务条款", "使用条款", "本协议", "免责声明",
]  # fmt: skip
ZH_POLICY_SUBSTRINGS = ("隐私政策", "隐私条款", "使用条款", "服务条款", "用户协议", "使用cookie", "cookie政策", "cookies政策")


class CjkC4Filter(BaseFilter):
    """C4's rules for text without spaces between words, deciding like datatrove's C4QualityFilter
    with three changes that Chinese needs:

    - units are sentences (C4's own `split_paragraph=False` mode), split at Chinese and ASCII
      sentence ends and line breaks: Chinese pages often run many sentences, and headings, into one
      line, and one heading at its end would otherwise discard the whole line;
    - terminal punctuation includes 。！？, the ． and . that technical writing ends sentences with (the
      tokenizer decides which . end a sentence, see words.py) and closing quotes; words come from
      the language's tokenizer;
    - curly brackets drop a page when they make up more than `max_curly_bracket_ratio` of its
      characters (code), not at the first one: Chinese Wikipedia-derived text carries MediaWiki
      conversion markup such as -{后}- in otherwise clean prose.
    """

    name = "C4 Quality (CJK)"

    def __init__(
        self,
        language: Any,
        line_end: tuple[str, ...] = ZH_LINE_END,
        filter_no_terminal_punct: bool = True,
        min_num_sentences: int = 3,
        min_words_per_line: int = 3,
        max_word_length: int = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        max_curly_bracket_ratio: float | None = 0.02,
        filter_policy: bool = True,
    ) -> None:
        super().__init__()
        self.tokenizer = language
        self.line_end = tuple(line_end)
        self.filter_no_terminal_punct = filter_no_terminal_punct
        self.min_num_sentences = min_num_sentences
        self.min_words_per_line = min_words_per_line
        self.max_word_length = max_word_length
        self.filter_lorem_ipsum = filter_lorem_ipsum
        self.filter_javascript = filter_javascript
        self.max_curly_bracket_ratio = max_curly_bracket_ratio
        self.filter_policy = filter_policy
        self.policy = tuple(POLICY_SUBSTRINGS) + ZH_POLICY_SUBSTRINGS

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        if self.filter_lorem_ipsum and "lorem ipsum" in text.lower():
            return False, "lorem_ipsum"
        if self.max_curly_bracket_ratio is not None:
            braces = sum(text.count(c) for c in "{}｛｝")
            if braces > self.max_curly_bracket_ratio * max(len(text), 1):
                return False, "curly_bracket"
        sentences = 0
        for start, end in self.tokenizer.span_tokenize(text):
            unit = CITATION_REGEX.sub("", text[start:end].strip())
            if self.filter_no_terminal_punct and (not unit.endswith(self.line_end) or unit.endswith(("...", "…"))):
                continue
            words = self.tokenizer.inner.word_tokenize(unit)
            if len(words) < self.min_words_per_line or any(len(w) > self.max_word_length for w in words):
                continue
            lower = unit.lower()
            if self.filter_javascript and "javascript" in lower:
                continue
            if self.filter_policy and any(p in lower for p in self.policy):
                continue
            sentences += 1
        if sentences < self.min_num_sentences:
            return False, "too_few_sentences"
        return True


class CjkGopherRepetitionFilter(GopherRepetitionFilter):
    """Gopher repetition for text without spaces: datatrove's line and paragraph rules unchanged, its
    n-gram rules with two changes in how n-grams are measured:

    - lengths in the text's own characters: datatrove joins an n-gram's words with spaces before
      measuring it; for Chinese, whose words are one to three characters, that inflates every
      fraction by up to 75% and drops clean articles that name the same entity a few times;
    - n-grams of words, not of punctuation marks: Gopher's words were whitespace-separated, with
      their punctuation attached; jieba returns every mark as a word of its own, so "(P<0.05)；" is
      six of a 10-gram's ten words and a formula that a scientific abstract repeats after each
      result makes long "duplicated n-grams". Words are those Gopher quality counts (any character
      outside datatrove's PUNCTUATION_SET).
    """

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text
        kept = self._lines_and_paragraphs(text)
        if kept is not True:
            return kept
        words = [w for w in self.language.word_tokenize(text) if any(ch not in PUNCTUATION_SET for ch in w)]
        for n, limit in self.top_n_grams:
            grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
            if grams:
                gram, count = grams.most_common(1)[0]
                if sum(map(len, gram)) * count / len(text) > limit:
                    return False, f"top_{n}_gram"
        for n, limit in self.dup_n_grams:
            seen: set[tuple[str, ...]] = set()
            repeated, i = 0, 0
            while i < len(words) - n + 1:
                gram = tuple(words[i : i + n])
                if gram in seen:
                    repeated += sum(map(len, gram))
                    i += n
                else:
                    seen.add(gram)
                    i += 1
            if repeated / len(text) > limit:
                return False, f"duplicated_{n}_n_grams"
        return True

    def _lines_and_paragraphs(self, text: str) -> bool | tuple[bool, str]:
        if not text:
            return False, "empty"
        checks = (
            (self.paragraph_exp.split(text.strip()), self.dup_para_frac, self.dup_para_char_frac, "para"),
            (self._line_splitter.split(text), self.dup_line_frac, self.dup_line_char_frac, "line"),
        )
        for units, frac_limit, char_limit, name in checks:
            duplicates, chars = find_duplicates(units)
            if frac_limit and duplicates / len(units) > frac_limit:
                return False, f"dup_{name}_frac"
            if char_limit and chars / len(text) > char_limit:
                return False, f"dup_{name}_char_frac"
        return True


def lines_are_long(text: str, long_line_length: int | None) -> bool:
    """Whether the non-empty lines average more than `long_line_length` characters (None: never)."""
    lines = [line for line in text.split("\n") if line.strip()]
    return long_line_length is not None and bool(lines) and sum(map(len, lines)) / len(lines) > long_line_length


class LongLineFineWebFilter(FineWebQualityFilter):
    """datatrove's FineWeb rules; its line-punctuation rule reads sentences, not lines, in a document
    whose lines average more than `long_line_length` characters.

    FineWeb drops a page when fewer than `line_punct_thr` (12%) of its lines end in terminal
    punctuation: menus and lists fail, paragraphs pass. A document that arrives as one long line (an
    e-mail, a review, a forum post without its line breaks) has one "line", and its last character
    (a sign-off, "four stars from me") decides alone. Lines that long are paragraphs, and the
    sentences inside them are what the rule is about. Pages of short lines are judged exactly as
    FineWeb does, and keyword spam on one unpunctuated line has no sentence that ends in
    punctuation, so it still fails.
    """

    def __init__(self, language: Any, long_line_length: int | None = 200, **params: Any) -> None:
        super().__init__(language=language, **params)
        self.long_line_length = long_line_length
        # Ours replaces datatrove's line check, which then never fires (no ratio is below 0).
        self.unit_punct_thr, self.line_punct_thr = self.line_punct_thr, 0.0

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        units = [line for line in doc.text.split("\n") if line.strip()]
        if not units:
            return False, "empty"
        if lines_are_long(doc.text, self.long_line_length):
            units = self.language.sent_tokenize(doc.text)
        ratio = sum(unit.endswith(self.stop_chars) for unit in units) / len(units)
        if ratio < self.unit_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return False, "line_punct_ratio"
        return super().filter(doc)


class LongLineC4Filter(C4QualityFilter):
    """datatrove's C4 rules; a document whose lines average more than `long_line_length` characters is
    judged sentence by sentence (one sentence a line, C4's own sentence mode), not line by line.

    C4 deletes every line that mentions javascript or a policy phrase and then counts the sentences
    left. On a forum post that arrives as one line, "I've done courses in Python and JavaScript"
    deletes the whole post; sentence by sentence it deletes that sentence.
    """

    def __init__(self, language: Any, long_line_length: int | None = 200, **params: Any) -> None:
        super().__init__(language=language, **params)
        self.long_line_length = long_line_length

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self.split_paragraph and lines_are_long(doc.text, self.long_line_length):
            doc.text = "\n".join(self.language.sent_tokenize(doc.text))  # the chain's throwaway Document
        return super().filter(doc)


class PolicyBoilerplateFilter(BaseFilter):
    """Drops cookie banners, privacy policies and terms-of-use pages: at least `min_hits` policy terms
    and at least `min_per_1000_chars` of them per 1,000 characters. Measured: the six policy pages of
    tests/fixtures score 12-36 hits and 12-93 per 1,000 characters; 1,104 Chinese Wikipedia
    paragraphs, 5,000 People's Daily paragraphs and 60 English Wikipedia articles score at most 2 hits."""

    name = "Policy boilerplate"

    def __init__(self, language: Any = None, min_hits: int = 4, min_per_1000_chars: float = 5.0, terms: list[str] | None = None) -> None:
        super().__init__()
        self.min_hits = min_hits
        self.min_per_1000_chars = min_per_1000_chars
        self.terms = tuple(t.lower() for t in (terms or POLICY_TERMS))

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        text = doc.text.lower()
        hits = sum(text.count(term) for term in self.terms)
        if hits >= self.min_hits and hits * 1000 >= self.min_per_1000_chars * max(len(text), 1):
            return False, "policy_boilerplate"
        return True


def rule_class(family: str, lang: str) -> type[BaseFilter]:
    """The class that runs `family` for `lang` (the CJK classes for Chinese, Japanese, Korean)."""
    cjk = lang in CJK_LANGUAGES
    return {
        "gopher_repetition": CjkGopherRepetitionFilter if cjk else GopherRepetitionFilter,
        "gopher_quality": GopherQualityFilter,
        "c4": CjkC4Filter if cjk else LongLineC4Filter,
        "policy": PolicyBoilerplateFilter,
        "fineweb": LongLineFineWebFilter,
    }[family]


def rules_errors(lang: str, families: Any, where: str | None = None) -> list[str]:
    """Every unknown family, unknown setting and wrong-typed setting of one language's rules, each
    named by its key path under `where` (default `rules.<lang>`); `lang` picks the classes."""
    where = where or f"rules.{lang}"
    if not isinstance(families, dict):
        return [f"{where}: expected a mapping of rule families, got {show(families)}"]
    unknown = set(families) - set(FAMILIES)
    if unknown:
        return [f"{where}: unknown rule families {sorted(unknown)}; known: {', '.join(FAMILIES)}"]
    errors = []
    for family, settings in families.items():
        if settings is not None:
            errors += settings_errors(rule_class(family, lang), settings, f"{where}.{family}")
    return errors


def _make(family: str, lang: str, params: dict[str, Any], tokenizer: LastTextMemo) -> BaseFilter:
    cls = rule_class(family, lang)
    params, errors = check_settings(cls, params, f"rules.{lang}.{family}")  # as the class takes them: "2e3" as 2000
    if errors:  # RuleChain checked them first: only a caller of _make alone gets here
        raise ValueError("\n".join(errors))
    if "language" not in inspect.signature(cls).parameters:  # a rule of a developer's that counts no words
        return cls(**params)
    return cls(language=tokenizer, **params)  # datatrove's word tokenizer for the language; tuples already (check_settings)


class RuleChain:
    """The enabled rule families of one language, in order; the first failure names the drop reason."""

    def __init__(self, lang: str, families: dict[str, dict[str, Any] | None], tokenizer: LastTextMemo | None = None) -> None:
        errors = rules_errors(lang, families)
        if errors:
            raise ValueError("\n".join(errors))
        self.lang = lang
        self.filters: list[tuple[str, BaseFilter]] = []
        for family in FAMILIES:
            params = families.get(family)
            if params is None:
                continue
            try:
                self.filters.append((family, _make(family, lang, params, tokenizer or word_tokenizer(lang))))
            except TypeError as exc:
                raise ValueError(f"rules.{lang}.{family}: {exc}") from exc

    def failures(self, text: str, first_only: bool = False) -> list[str]:
        """`family:reason` of every failing rule, in order (only the first with first_only)."""
        failed = []
        for family, rule in self.filters:
            # C4QualityFilter edits doc.text; every rule gets its own Document around the same str.
            result = rule.filter(Document(text=text, id=""))
            if isinstance(result, tuple) and not result[0]:
                failed.append(f"{family}:{result[1]}")
            elif result is False:
                failed.append(family)
            if failed and first_only:
                break
        return failed

    def first_failure(self, text: str) -> str | None:
        failed = self.failures(text, first_only=True)
        return failed[0] if failed else None
