"""Clean writing the filters used to drop (issue 13): Chinese academic and technical text that ends its
sentences with ． or . instead of 。 (abstracts, reports), and English web prose that arrives as one
long line (e-mails, product reviews, forum posts). Junk that the fixes could let through stays dropped.

The sets, each passed through language ID and the rules as the filter stage decides:
- real Chinese from ../shared/data, rewritten the way technical writing punctuates: 1,104 Chinese
  Wikipedia paragraphs (cmrc2018, 200+ characters) and 455 People's Daily paragraphs (every 5th of
  those with 200+ characters; its numbers are full-width, １１０．８), in three styles: 。→． with
  ，kept; ASCII . , ! ? ; : throughout; 。→. with ，kept;
- the 60 English Wikipedia articles (wikitext-2) with their lines joined into one;
- tests/fixtures/filter_clean.jsonl: 41 hand-written Chinese abstracts and reports (medicine,
  engineering, economics, computer science, agriculture, materials, ...; with the formulas their
  genre repeats, decimals, version strings, units and Latin abbreviations) and 30 English e-mails,
  reviews and forum posts of one line each.

Held out: the odd-numbered Wikipedia paragraphs, the second half of People's Daily, the last 30
English articles and the fixture documents marked `heldout` were not looked at while the rules were
changed, and were measured once after. That measurement found two half-width abstracts dropped by
language ID (lid.176 reads ASCII punctuation after Chinese as Japanese; the tuning paragraphs showed
the same, 13 of 552); langid.py was fixed on the tuning paragraphs, and a second batch (`heldout-2`),
written then, was measured once after that.

Pass rates, before this change -> after (tuning part | held-out part):
| set                                   | tuning            | held-out               |
|---------------------------------------|-------------------|------------------------|
| zh Wikipedia, original                | 97.3% -> 98.7%    | 97.5% -> 98.0%         |
| zh Wikipedia, ． ，                    | 0.5% -> 98.6%     | 0.2% -> 98.0%          |
| zh Wikipedia, . , (ASCII)             | 0.5% -> 98.6%     | 0.2% -> 97.6%          |
| zh Wikipedia, . ，                     | 0.5% -> 98.7%     | 0.2% -> 98.0%          |
| zh People's Daily, original           | 92.1% -> 92.1%    | 92.1% -> 92.5%         |
| zh People's Daily, each style         | 1.8% -> 92.1%     | 3.5% -> 92.5%          |
| en Wikipedia articles as one line     | 19/30 -> 30/30    | 18/30 -> 30/30         |
| zh abstracts (fixtures)               | 0/11 -> 11/11     | 0/5 -> 5/5; 0/4 -> 4/4 |
| zh reports (fixtures)                 | 0/10 -> 10/10     | 0/5 -> 5/5; 0/2 -> 1/2 |
| en e-mails (fixtures)                 | 0/6 -> 6/6        | 0/3 -> 3/3; 0/2 -> 2/2 |
| en reviews (fixtures)                 | 0/6 -> 6/6        | 0/2 -> 2/2; 0/1 -> 1/1 |
| en forum posts (fixtures)             | 0/6 -> 6/6        | 0/3 -> 3/3; 0/1 -> 1/1 |
Before, the Chinese were dropped as c4:too_few_sentences (no sentence found) and two formulaic
ones also by gopher_repetition; the English as fineweb:line_punct_ratio, one by C4's javascript
line rule. Held-out zh abstracts were 3/5 after the rule fixes alone (language ID, fixed since).
People's Daily paragraphs lose 8% to the rules in every style as in the original (mostly fewer than
3 sentences in 200+ characters). The one held-out document still dropped, zh-report-17, is a terse
statistics release with one of the 18 Chinese stop words (gopher_enough_stop_words needs 2), as it
is with 。: a limit of that rule, not of punctuation.

Junk: all 56 fixtures of tests/fixtures/filter_junk.jsonl are dropped with their expected reason,
among them the 10 added for this change (below), which were dropped before it too.
"""

import re
from collections import Counter

import pytest

from tests.pipeline.filter.conftest import CLEAN, JUNK

STYLES = {
    "full-width ．，": str.maketrans({"。": "．"}),
    "ASCII . ,": str.maketrans({"。": ".", "，": ",", "！": "!", "？": "?", "；": ";", "：": ":"}),
    "ASCII . with ，": str.maketrans({"。": "."}),
}
# Clean fixtures still dropped, with the reason (see the module docstring).
KNOWN_DROPPED = {"zh-report-17": "gopher_quality:gopher_enough_stop_words"}
# Junk the fixes could let through, with the rule that drops it now. The comments say which rule
# each fix took away: sentences of long lines (fineweb), sentences at ． and . (c4), higher Chinese
# n-gram thresholds (gopher_repetition).
STILL_DROPPED = {
    "en-spam-04": "gopher_repetition:top_2_gram",  # one unpunctuated line: no sentence ends in punctuation
    "en-spam-05": "gopher_repetition:top_3_gram",  # spam in sentences on one line: fineweb passes it now
    "en-nav-05": "gopher_quality:gopher_enough_stop_words",  # a menu run into one line
    "en-rep-04": "gopher_repetition:top_4_gram",  # a product grid run into one line
    "en-cookie-04": "policy:policy_boilerplate",  # a cookie banner on one line: C4 no longer drops it
    "zh-spam-04": "gopher_repetition:top_2_gram",  # spam ending sentences with .: C4 counts them now
    "zh-spam-05": "gopher_repetition:top_3_gram",  # 1.38x Gopher's threshold; Chinese allows 1.15x
    "zh-cookie-04": "policy:policy_boilerplate",  # a disclaimer ending sentences with .
    "zh-nav-05": "gopher_quality:gopher_below_alpha_threshold",  # a numbered menu, 1．网站首页
    "zh-rep-04": "gopher_quality:gopher_enough_stop_words",  # a repeated notice run into one line
}


def test_hand_written_abstracts_reports_emails_reviews_and_posts_pass(verdicts):
    assert Counter(d["lang"] for d in CLEAN) == {"zh": 37, "en": 30}
    assert Counter(d["register"] for d in CLEAN) == {"abstract": 20, "report": 17, "email": 11, "review": 9, "forum": 10}
    assert all("\n" not in d["text"] and len(d["text"]) >= 700 for d in CLEAN if d["lang"] == "en")
    dropped = {d["id"]: verdicts.first(d["text"]) for d in CLEAN}
    assert {i: r for i, r in dropped.items() if r} == KNOWN_DROPPED


def rewritten_losses(verdicts, texts, kept_before, style) -> list[str]:
    """First reasons of the texts kept as written and dropped once rewritten in `style`."""
    return [r for t, before in zip(texts, kept_before) if before and (r := verdicts.first(t.translate(STYLES[style])))]


@pytest.mark.parametrize("style", STYLES)
def test_chinese_wikipedia_punctuated_like_technical_writing_keeps_what_the_original_keeps(
    verdicts, chinese_paragraphs, chinese_paragraph_verdicts, style
):
    kept = [r is None for r in chinese_paragraph_verdicts]
    losses = rewritten_losses(verdicts, chinese_paragraphs, kept, style)
    # measured, of 1,086 kept as written: 1 lost with ．，, 3 with ASCII marks, 0 with . and ， (all language ID)
    assert len(losses) <= 0.005 * len(chinese_paragraphs), Counter(losses)


@pytest.fixture(scope="module")
def peoples_daily(shared_data):
    lines = (shared_data / "text/zh/peoples_daily_199801_raw.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if len(line.strip()) >= 200][::5]


def test_peoples_daily_with_full_width_stops_and_decimals_keeps_what_the_original_keeps(verdicts, peoples_daily):
    # ． is also its decimal point (１１０．８ 亿), which ends no sentence: 108 of them in 40 paragraphs
    assert sum(bool(re.search("[０-９]．[０-９]", t)) for t in peoples_daily) >= 40
    kept = [verdicts.first(t) is None for t in peoples_daily]
    assert sum(kept) >= 0.9 * len(peoples_daily)
    assert rewritten_losses(verdicts, peoples_daily, kept, "full-width ．，") == []


def test_english_articles_as_one_line_pass(verdicts, english_articles):
    one_line = [" ".join(line.strip() for line in a.splitlines() if line.strip()) for a in english_articles]
    reasons = Counter(verdicts.first(t) for t in one_line)
    assert reasons[None] >= 0.98 * len(one_line), reasons.most_common(4)


def test_junk_the_fixes_could_let_through_is_still_dropped(verdicts):
    by_id = {d["id"]: d for d in JUNK}
    assert {i: verdicts.first(by_id[i]["text"]) for i in STILL_DROPPED} == STILL_DROPPED
