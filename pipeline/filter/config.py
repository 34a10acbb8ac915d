"""Filter stage config: language ID keep-set and the rule families with their thresholds per language.

The run config's `filter:` section and `crawlmill filter`'s options (`--config FILE` holds the same
section). `configs/filters.yaml` is this module's defaults written out with the reasons; a test
keeps the two equal. Rule parameters are the keyword arguments of the classes in rules.py
(datatrove's names); a family set to null is disabled. Rule families given for a language replace
only those families of the defaults. Languages kept by language ID but without rules of their own
use `rules.default` (the English rules without English stop words). `check` validates it all before
any stage starts: setting names and types (settings.py, converting numeric strings as every config
does: `min_doc_words: 2e3`, a string to YAML 1.1, is 2000), kept languages against the model's labels
and datatrove's word tokenizers, `rules` languages against the keep-set.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

ZH_STOP_WORDS = ["的", "了", "是", "在", "和", "有", "与", "也", "就", "都", "而", "及", "这", "对", "为", "中", "人", "一"]
ZH_STOP_CHARS = ["。", "！", "？", "!", "?", "．", ".", "”", "」", "』", '"', "…"]  # ． and .: technical writing

DEFAULT_RULES: dict[str, dict[str, dict[str, Any] | None]] = {
    "en": {
        "gopher_repetition": {},
        # datatrove's spaCy tokens count punctuation as words: clean English Wikipedia scores
        # 0.78-0.84 alphabetic words (1st-50th percentile) where whitespace words score 0.90-0.95,
        # so Gopher's 0.8 on whitespace words is 0.7 here.
        "gopher_quality": {"max_non_alpha_words_ratio": 0.7},
        # FineWeb's setting: that check is fineweb's job. Lines averaging over 200 characters (~35
        # words) are paragraphs, judged by their sentences: clean pages of samples/ average 230-304
        # characters a line, menus, lists and play scripts 6-38 (see LongLineC4Filter).
        "c4": {"filter_no_terminal_punct": False, "long_line_length": 200},
        "policy": {},
        "fineweb": {"long_line_length": 200},  # the same for the line-punctuation rule
    },
    "zh": {
        # Gopher's n-gram thresholds x1.15 (top n-gram) and x1.7 (duplicated n-grams), n-grams of words
        # without punctuation marks (see CjkGopherRepetitionFilter). Measured as a multiple of
        # Gopher's thresholds: 780 Chinese Wikipedia and People's Daily paragraphs reach 1.11 (top)
        # and 1.18 (dup); abstracts and reports that repeat their genre's formulas ("差异有统计学意义
        # (P<0.05)" after each result, "同比增长" in every clause of a statistics release) 1.06 and 1.64;
        # keyword spam that only these rules catch (tests/fixtures/filter_junk.jsonl) 1.38 and up (top),
        # repeated blocks run into one line 4.7 (dup).
        "gopher_repetition": {
            "top_n_grams": [[2, 0.23], [3, 0.21], [4, 0.18]],
            "dup_n_grams": [[5, 0.26], [6, 0.24], [7, 0.22], [8, 0.2], [9, 0.19], [10, 0.17]],
        },
        # jieba words: 1-2 characters on average (1.6-2.5 on Chinese Wikipedia, 1st-99th percentile);
        # punctuation tokens are words too, so alphabetic words are 0.62-0.88.
        "gopher_quality": {
            "min_avg_word_length": 1,
            "max_avg_word_length": 6,
            "max_non_alpha_words_ratio": 0.5,
            "stop_words": ZH_STOP_WORDS,
        },
        "c4": {"min_num_sentences": 3, "max_curly_bracket_ratio": 0.02},
        "policy": {},
        # A Chinese line often holds a whole paragraph (and a heading run into it), so a page with no
        # line ending in punctuation is left to the sentence-level C4 rule; lines of 12 characters
        # or fewer are short (a Chinese character carries about as much as an English word).
        # A line averaging over 80 characters is a paragraph (200 for English, scaled like 30 -> 12).
        "fineweb": {"stop_chars": ZH_STOP_CHARS, "short_line_length": 12, "line_punct_exclude_zero": True, "long_line_length": 80},
    },
}
# Any other kept language: the English rules without the stop-word check, whose list (datatrove's
# the/be/to/of/and/that/have/with; datatrove ships no other language's) dropped every clean Dutch
# and Russian page. A language's own rules can switch it back on with its own stop_words.
DEFAULT_RULES["default"] = copy.deepcopy(DEFAULT_RULES["en"])
DEFAULT_RULES["default"]["gopher_quality"] = {"max_non_alpha_words_ratio": 0.7, "min_stop_words": None}


@dataclass
class LanguageIdConfig:
    # fastText LID model (lid.176.bin/.ftz, GlotLID); default lid.176.ftz (see langid.py)
    model_path: str | None = field(default=None, metadata={"path": True})
    keep: dict[str, float] = field(default_factory=lambda: {"en": 0.65, "zh": 0.65})  # language: min score

    def __post_init__(self) -> None:
        for lang, score in self.keep.items():
            if not isinstance(score, (int, float)) or not 0 <= score <= 1:
                raise ValueError(f"language_id.keep.{lang}: expected a score in [0, 1], got {score!r}")


@dataclass
class FilterConfig:
    inputs: list[str] = field(default_factory=list, metadata={"path": True})  # stage output folders (e.g. ingest's)
    language_id: LanguageIdConfig = field(default_factory=LanguageIdConfig)
    rules: dict[str, dict[str, dict[str, Any] | None]] = field(default_factory=lambda: copy.deepcopy(DEFAULT_RULES))
    keep_dropped: bool = False  # also write dropped documents, with their reason, to _dropped/

    def __post_init__(self) -> None:
        given, self.rules = self.rules, copy.deepcopy(DEFAULT_RULES)
        for lang, families in given.items():
            self.rules[lang] = {**self.rules.get(lang, self.rules["default"]), **copy.deepcopy(families)}

    def rules_for(self, lang: str) -> dict[str, dict[str, Any] | None]:
        return self.rules.get(lang, self.rules.get("default", {}))

    def check(self) -> None:
        """Fail now, not in a worker hours later: on rule settings the rule classes do not take (or
        take with another type), a missing model, kept languages the model cannot report or without
        a word tokenizer, and rules that no kept language uses. The settings are left as the classes
        take them ("2e3" as 2000, YAML lists as tuples where a class asks for tuples)."""
        import inspect

        from datatrove.pipeline.filters import gopher_quality_filter as gopher

        from .langid import FastTextLanguageId, model_labels, nearest_languages
        from .rules import CJK_LANGUAGES, NO_SENTENCE_MARKS, RuleChain, rules_errors
        from .words import check_tokenizer

        keep = self.language_id.keep
        errors = [e for key, families in self.rules.items() for e in rules_errors(key, families)]
        for lang in sorted(set(keep) & set(CJK_LANGUAGES) - set(self.rules)):  # ja, ko: filtered by the CJK rule classes
            if wrong := rules_errors(lang, self.rules["default"], "rules.default"):
                errors.append(f"language_id.keep.{lang}: {lang} has no built-in rules, and the default (English) rules do not fit the "
                              f"CJK rule classes that filter it ({'; '.join(wrong)}): give rules.{lang} (configs/filters.yaml's rules.zh is a start)")  # fmt: skip
        for lang in sorted(set(keep) & set(NO_SENTENCE_MARKS) - set(self.rules)):
            errors.append(f"language_id.keep.{lang}: {lang} has no built-in rules, and the default (English) rules count sentence-ending "
                          f"marks that {lang} does not write (they drop every clean document): give rules.{lang} (rules.default with c4: null and fineweb: null is a start)")  # fmt: skip
        if errors:
            raise ValueError("\n".join(errors))
        self.rules = {key: _typed(key, families) for key, families in self.rules.items()}  # what the classes take: "2e3" -> 2000

        model = FastTextLanguageId.resolve_path(self.language_id.model_path)
        if not model.is_file():
            raise FileNotFoundError(f"language_id.model_path: {model} does not exist")
        labels = model_labels(model)
        name = model.name.removesuffix(".bin").removesuffix(".ftz")
        for lang in keep:
            if lang not in labels:
                near = nearest_languages(lang, labels)
                hint = f"did you mean {' or '.join(near)}?" if near else f"its {len(labels)} labels: {', '.join(labels[:12])}, ..."
                errors.append(f"language_id.keep.{lang}: not a label of {name} ({hint})")
        for key in self.rules:
            if key == "default" or key in keep or (key in DEFAULT_RULES and self.rules[key] == _typed(key, DEFAULT_RULES[key])):
                continue  # the built-in en and zh rules are there whatever is kept
            near = nearest_languages(key, list(keep))
            errors.append(f"rules.{key}: not a kept language (keep: {', '.join(keep)})" + (f"; did you mean {' or '.join(near)}?" if near else ""))
        min_stop_words = inspect.signature(gopher.GopherQualityFilter).parameters["min_stop_words"].default
        for lang in keep:  # datatrove's stop words, its default, are English
            quality = self.rules_for(lang).get("gopher_quality")
            if lang != "en" and quality is not None and quality.get("stop_words") is None and quality.get("min_stop_words", min_stop_words):
                errors.append(
                    f"rules.{lang if lang in self.rules else 'default'}.gopher_quality: {lang} text would need datatrove's English "
                    f"stop words ({', '.join(gopher.STOP_WORDS)}): give stop_words for {lang} or set min_stop_words: null"
                )
        if errors:
            raise ValueError("\n".join(errors))

        for lang in keep:
            families = self.rules_for(lang)
            if any(settings is not None for settings in families.values()):
                try:
                    check_tokenizer(lang)
                except ValueError as exc:
                    raise ValueError(f"language_id.keep.{lang}: {exc}") from None
            RuleChain(lang, families)


def _typed(key: str, families: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any] | None]:
    """`families` (checked: settings.py) with each setting as its rule class takes it: a numeric string
    as a number, an int as a float where the class asks for one, a YAML list as a tuple where it asks for one."""
    from .rules import rule_class
    from .settings import check_settings

    return {family: None if settings is None else check_settings(rule_class(family, key), settings, f"rules.{key}.{family}")[0] for family, settings in families.items()}
