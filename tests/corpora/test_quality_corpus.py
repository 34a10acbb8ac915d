"""The quality classifier's text: web_junk's generated pages and clean documents, the corpus built from
the real text of ../shared/data (skipped without it), and samples/quality shipped for the demo."""

import importlib.util
import json
import re
from collections import Counter

import pytest
import yaml

from crawlmill.corpora import quality_corpus, web_junk
from crawlmill.corpora.web_junk import KINDS, clean_documents, junk_documents, sentences
from crawlmill.corpora.web_junk_phrases import EN, ZH
from tests.conftest import SAMPLES

QUALITY = SAMPLES / "quality"
LANGS = ("en", "zh")


def reference(lang: str) -> list[str]:
    return (QUALITY / f"reference_{lang}.txt").read_text(encoding="utf-8").splitlines()


def make_quality_samples():  # noqa: ANN201 - the samples/ script as a module (samples/ is no package)
    spec = importlib.util.spec_from_file_location("make_quality_samples", SAMPLES / "make_quality_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- web_junk --------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_junk_documents_are_deterministic_and_seeded(lang):
    first = junk_documents(reference(lang), lang, 25, seed=3)
    assert first == junk_documents(reference(lang), lang, 25, seed=3)
    assert first[:7] == junk_documents(reference(lang), lang, 7, seed=3)  # a prefix does not depend on n
    other = junk_documents(reference(lang), lang, 25, seed=4)
    assert sum(a["text"] != b["text"] for a, b in zip(first, other)) == 25


@pytest.mark.parametrize("lang", LANGS)
def test_every_junk_kind_is_a_plausible_page_in_both_languages(lang):
    paragraphs = reference(lang)
    bank = json.dumps(EN if lang == "en" else ZH, ensure_ascii=False).lower()
    docs = junk_documents(paragraphs, lang, 5 * len(KINDS), seed=0)
    assert Counter(d["kind"] for d in docs) == {k: 5 for k in KINDS}
    for d in docs:
        bare_notice = d["kind"] == "notice" and "\n\n" in d["text"] and d["text"].count("\n") <= 6  # heading and notice only
        assert (10 if bare_notice else 200 if d["kind"] == "notice" else 250) <= len(d["text"]) <= 8000, (d["kind"], len(d["text"]))
        assert "{" not in d["text"] and "\n\n\n" not in d["text"]  # every placeholder filled, tidy lines
        assert d["sources"] and all(0 <= i < len(paragraphs) for i in d["sources"])
        # real vocabulary: words (5+ letters, or 2 Han characters) of the page's own source paragraphs
        # that no phrase bank has
        source = " ".join(paragraphs[i] for i in d["sources"]).lower()
        words = set(re.findall(r"[a-z]{5,}", source) if lang == "en" else (source[i : i + 2] for i in range(len(source) - 1)))
        own = [w for w in words if w not in bank and (lang == "en" or re.fullmatch(r"[\u4e00-\u9fff]{2}", w))]
        assert bare_notice or sum(w in d["text"].lower() for w in own) >= 2, d["kind"]  # a bare error page says nothing of them
    # the kinds made of real sentences carry them verbatim, the others hardly any
    real = {s for p in paragraphs for s in sentences(p, lang) if len(s) > 40}
    for kind in ("boilerplate", "comment_spam", "sentence_salad"):
        assert any(s in d["text"] for d in docs if d["kind"] == kind for s in real), kind
    verbatim = Counter(d["kind"] for d in docs for s in real if s in d["text"])
    assert verbatim["word_salad"] * 5 < verbatim["sentence_salad"]  # spun: few sentences survive whole
    if lang == "zh":
        assert any("【" in d["text"] for d in docs if d["kind"] == "sentence_salad")  # character-bracketed spam


@pytest.mark.parametrize("lang", LANGS)
def test_one_paragraph_is_enough_for_every_kind(lang):
    docs = junk_documents(reference(lang)[:1], lang, len(KINDS), seed=0)
    assert [d["kind"] for d in docs] == list(KINDS) and all(d["sources"] == [0] for d in docs)


def test_junk_documents_refuse_what_they_cannot_write():
    with pytest.raises(ValueError, match="lang"):
        junk_documents(reference("en"), "de", 1, 0)
    with pytest.raises(ValueError, match="real paragraphs"):
        junk_documents(["", "  "], "en", 1, 0)
    with pytest.raises(ValueError, match="unknown junk kinds"):
        junk_documents(reference("en"), "en", 1, 0, kinds=["spam"])


def test_clean_documents_are_consecutive_whole_paragraphs_inside_articles():
    paragraphs = reference("en")[:12] + [""] + reference("en")[12:30] + [""] + reference("en")[30:]
    docs = clean_documents(paragraphs, "en", 1000, seed=1)
    assert docs == clean_documents(paragraphs, "en", 1000, seed=1)
    seen = []
    for d in docs:
        ids = d["sources"]
        assert 1 <= len(ids) <= web_junk.MAX_CLEAN_WINDOW and ids == list(range(ids[0], ids[0] + len(ids)))
        assert all(paragraphs[i] for i in ids)  # never across an article boundary
        assert d["text"] == "\n".join(paragraphs[i] for i in ids)
        seen += ids
    assert seen == [i for i, p in enumerate(paragraphs) if p]  # all windows: each paragraph once, in order
    few = clean_documents(paragraphs, "en", 4, seed=1)
    assert len(few) == 4 and all(d in docs for d in few)


def test_web_junk_command_prints_jsonl(tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(reference("zh")), encoding="utf-8")
    assert web_junk.main([str(path), "--lang", "zh", "-n", "3", "--seed", "2"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows == junk_documents(reference("zh"), "zh", 3, 2)


# -- the corpus from ../shared/data ------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("quality-corpus")
    stats = quality_corpus.build(shared_data / "text", out, seed=0, cc_dir=shared_data / "cc")
    rows = {p.name: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()] for p in out.glob("*.jsonl")}
    return out, stats, rows


def test_shared_build_is_byte_identical_twice(built, shared_data, tmp_path):
    out, stats, _ = built
    assert quality_corpus.build(shared_data / "text", tmp_path, seed=0, cc_dir=shared_data / "cc") == stats
    names = sorted(p.name for p in out.iterdir())
    assert names == ["_stats.json", "heldout-real.jsonl", "negative-en.jsonl", "negative-zh.jsonl", "positive-en.jsonl", "positive-zh.jsonl"]
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    other = tmp_path / "seed1"
    quality_corpus.build(shared_data / "text", other, seed=1, cc_dir=None)
    assert (other / "negative-en.jsonl").read_bytes() != (out / "negative-en.jsonl").read_bytes()


def test_shared_build_classes_balanced_every_kind_in_both_languages(built):
    _, stats, rows = built
    for lang in LANGS:
        positives, negatives = rows[f"positive-{lang}.jsonl"], rows[f"negative-{lang}.jsonl"]
        assert len(positives) == len(negatives) >= 250
        assert all(r["lang"] == lang and r["kind"] == "clean" and r["text"] for r in positives)
        assert all(r["lang"] == lang and r["source"] == "web_junk" for r in negatives)
        kinds = Counter(r["kind"] for r in negatives)
        assert set(kinds) == set(KINDS) and max(kinds.values()) - min(kinds.values()) <= 1
        assert stats["files"][f"positive-{lang}.jsonl"]["documents"] == len(positives)
    assert {r["source"] for r in rows["positive-zh.jsonl"]} == {"cmrc2018", "peoples_daily_199801"}
    assert {r["source"] for r in rows["positive-en.jsonl"]} == {"wikitext-2-valid"}


@pytest.mark.parametrize("lang", LANGS)
def test_positives_and_negatives_share_no_source_paragraph(built, shared_data, lang):
    _, _, rows = built
    positives, negatives = rows[f"positive-{lang}.jsonl"], rows[f"negative-{lang}.jsonl"]
    positive_ids = {i for r in positives for i in r["paragraphs"]}
    negative_ids = {i for r in negatives for i in r["paragraphs"]}
    assert positive_ids and negative_ids and not positive_ids & negative_ids
    # and in the text: no sentence of a positive paragraph is in any negative page (sentences that
    # recur in other paragraphs, stock phrases of news and species articles, are left out)
    articles = quality_corpus.english_articles(shared_data / "text") if lang == "en" else quality_corpus.chinese_articles(shared_data / "text")
    recurring = Counter(s for _, paragraphs in articles for p in dict.fromkeys(paragraphs) for s in set(sentences(p, lang)))
    junk = "\n".join(r["text"] for r in negatives)
    least = 60 if lang == "en" else 30
    positive_sentences = {s for r in positives for p in r["text"].split("\n") for s in sentences(p, lang) if len(s) >= least and recurring[s] == 1}
    assert len(positive_sentences) > 500
    assert [s for s in positive_sentences if s in junk] == []
    # while the negatives do draw on the same articles' real text
    assert sum(len(r["paragraphs"]) for r in negatives) > len(negatives)


def test_heldout_real_pages_are_extracted_and_labelled(built):
    _, stats, rows = built
    held = rows["heldout-real.jsonl"]
    table = quality_corpus.heldout_table()
    assert [r["url"] for r in held] == [t["url"] for t in table] and len({r["url"] for r in held}) == len(held)
    assert all(r["text"].strip() and r["source_format"] == "warc" and r["reason"] for r in held)
    assert Counter(r["label"] for r in held) == {"good": stats["files"]["heldout-real.jsonl"]["good"], "junk": stats["files"]["heldout-real.jsonl"]["junk"]}
    by_url = {r["url"]: r for r in held}
    assert "Common Crawl maintains a free, open repository" in by_url["https://www.commoncrawl.org/"]["text"]
    assert by_url["https://an.wikipedia.org/wiki/Escopete"]["label"] == "good"
    assert {r["lang"] for r in held} >= {"en", "zh"}


# -- samples/quality -------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_samples_quality_reference_text_is_as_documented(lang):
    lines = reference(lang)
    assert len(lines) == 40 and len(set(lines)) == 40
    assert all(300 <= len(line) <= 900 and line == line.strip() for line in lines)
    web = (QUALITY / f"web_{lang}.txt").read_text(encoding="utf-8").splitlines()
    assert len(web) == make_quality_samples().WEB_DOCUMENTS == 132


@pytest.mark.parametrize("lang", LANGS)
def test_samples_quality_web_files_regenerate_byte_identically(lang):
    script = make_quality_samples()
    assert script.web_text(lang) == (QUALITY / f"web_{lang}.txt").read_text(encoding="utf-8")
    assert script.main(["--check"]) == 0
    docs = junk_documents(reference(lang), lang, script.WEB_DOCUMENTS, script.SEED)
    assert Counter(d["kind"] for d in docs) == {k: script.WEB_DOCUMENTS // len(KINDS) for k in KINDS}


def sample_page_strings() -> list[str]:
    strings: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str):
            strings.append(node)
        elif isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((SAMPLES / "pages").glob("*.yaml")):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return strings


def test_samples_quality_shares_no_text_with_the_sample_corpus_pages():
    """The demo checks that a classifier trained on samples/quality ranks samples/pages' clean pages
    above their junk pages: that is only a test if none of their text was trained on."""
    strings = sample_page_strings()
    pages = "\n".join(strings)
    assert len(strings) > 500 and "Starting Tomato Seedlings" in pages
    # a window of 30 characters (English) or 12 (Chinese) is far longer than any stock phrase both share by chance
    for name, window in (("reference_en.txt", 30), ("web_en.txt", 30), ("reference_zh.txt", 12), ("web_zh.txt", 12)):
        page_windows = {page[i : i + window] for page in strings for i in range(len(page) - window + 1)}
        for line in (QUALITY / name).read_text(encoding="utf-8").splitlines():
            assert line not in pages
            shared = {line[i : i + window] for i in range(len(line) - window + 1)} & page_windows
            assert not shared, (name, sorted(shared)[:3])
