"""The acceptance bar of the filters: clean English and Chinese text passes, junk in both languages is
dropped with the reason its kind calls for, and where datatrove's classes fall short for Chinese."""

import json
from collections import Counter

import pytest
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter

from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.langid import FastTextLanguageId
from crawlmill.pipeline.filter.rules import CjkC4Filter, CjkGopherRepetitionFilter, RuleChain
from crawlmill.pipeline.filter.words import word_tokenizer
from tests.conftest import REPO

JUNK = [json.loads(line) for line in (REPO / "tests/fixtures/filter_junk.jsonl").read_text(encoding="utf-8").splitlines()]
# The reasons each kind of junk is expected to be dropped for (prefixes of `family:reason`).
EXPECTED = {
    "navigation": ("gopher_quality:", "fineweb:short_line_ratio", "fineweb:list_ratio"),
    "repeated_lines": ("gopher_repetition:dup_", "fineweb:char_dup_ratio"),
    "keyword_spam": ("gopher_repetition:top_", "gopher_repetition:duplicated_", "gopher_quality:gopher_enough_stop_words"),
    "lorem_ipsum": ("c4:lorem_ipsum", "lang_"),
    "code_dump": ("c4:curly_bracket", "lang_"),
    "cookie_policy": ("policy:policy_boilerplate",),
    "too_short": ("gopher_quality:gopher_short_doc", "lang_low_score"),
    "list_like": ("fineweb:", "gopher_quality:", "c4:too_few_sentences", "lang_low_score"),
}


class Verdicts:
    """LID then every rule of the detected language, as the filter stage decides (all failures kept)."""

    def __init__(self, lid_model_path) -> None:
        self.config = FilterConfig()
        self.lid = FastTextLanguageId(lid_model_path)
        self.chains = {lang: RuleChain(lang, self.config.rules_for(lang)) for lang in self.config.language_id.keep}

    def reasons(self, text: str, lang_hint: str | None = None) -> list[str]:
        lang, score = self.lid.predict(text)
        keep = self.config.language_id.keep
        lid_reason = [] if lang in keep and score >= keep[lang] else ["lang_not_kept" if lang not in keep else "lang_low_score"]
        rules_lang = lang if lang in keep else lang_hint
        return lid_reason + (self.chains[rules_lang].failures(text) if rules_lang in self.chains else [])


@pytest.fixture(scope="module")
def verdicts(lid_model_path):
    return Verdicts(lid_model_path)


def test_junk_in_both_languages_is_dropped_with_the_expected_reason(verdicts):
    assert len(JUNK) >= 40 and Counter(d["lang"] for d in JUNK) == {"en": 23, "zh": 23}
    wrong = {}
    for doc in JUNK:
        reasons = verdicts.reasons(doc["text"], doc["lang"])
        if not reasons or not any(r.startswith(EXPECTED[doc["category"]]) for r in reasons):
            wrong[doc["id"]] = reasons
    assert len(wrong) <= 0.05 * len(JUNK), wrong
    for lang in ("en", "zh"):
        of_lang = [d for d in JUNK if d["lang"] == lang]
        assert sum(d["id"] in wrong for d in of_lang) <= 0.05 * len(of_lang)


def test_policy_pages_are_caught_by_the_policy_rule_itself(verdicts):
    for doc in (d for d in JUNK if d["category"] == "cookie_policy"):
        assert "policy:policy_boilerplate" in verdicts.chains[doc["lang"]].failures(doc["text"])


@pytest.fixture(scope="module")
def chinese_paragraphs(shared_data):
    lines = (shared_data / "text/zh/cmrc2018_contexts.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if len(line.strip()) >= 200]


@pytest.fixture(scope="module")
def english_articles(shared_data):
    lines = (shared_data / "text/en/wikitext-2-valid.articles.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


def test_clean_chinese_wikipedia_passes(verdicts, chinese_paragraphs):
    assert len(chinese_paragraphs) > 1000
    reasons = Counter((verdicts.reasons(t) or [None])[0] for t in chinese_paragraphs)
    assert reasons[None] >= 0.95 * len(chinese_paragraphs), reasons.most_common(8)


def test_clean_english_wikipedia_passes(verdicts, english_articles):
    assert len(english_articles) == 60
    reasons = Counter((verdicts.reasons(t) or [None])[0] for t in english_articles)
    assert reasons[None] >= 0.95 * len(english_articles), reasons.most_common(8)


def share_dropped(rule, texts) -> float:
    return sum(rule.filter(Document(text=t, id="")) is not True for t in texts) / len(texts)


def test_where_datatrove_falls_short_for_chinese(chinese_paragraphs):
    jieba_words = word_tokenizer("zh")
    # C4 as datatrove ships it: ASCII terminal punctuation, whitespace words -> nearly all dropped.
    assert share_dropped(C4QualityFilter(), chinese_paragraphs) > 0.9
    assert share_dropped(CjkC4Filter(language=jieba_words), chinese_paragraphs) < 0.02
    # Gopher quality with datatrove's defaults (English tokenizer, English stop words) -> nearly all dropped.
    assert share_dropped(GopherQualityFilter(), chinese_paragraphs) > 0.9
    # Gopher repetition with jieba words: datatrove measures n-grams with inserted spaces, which
    # drops more clean paragraphs (measured 1.8% against 1.4%).
    theirs = share_dropped(GopherRepetitionFilter(language=jieba_words), chinese_paragraphs)
    ours = share_dropped(CjkGopherRepetitionFilter(language=jieba_words), chinese_paragraphs)
    assert ours < 0.02 and theirs > ours


def test_english_rules_are_datatrove_classes():
    chain = RuleChain("en", FilterConfig().rules_for("en"))
    assert {type(rule).__module__.split(".")[0] for family, rule in chain.filters if family != "policy"} == {"datatrove"}
