"""Shared by the filter tests: the stage's decision over a text (language ID, then every rule of the
detected language), and the real clean text of ../shared/data the rules are judged on."""

import json

import pytest

from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.langid import FastTextLanguageId
from crawlmill.pipeline.filter.rules import RuleChain
from tests.conftest import REPO

CLEAN = [json.loads(line) for line in (REPO / "tests/fixtures/filter_clean.jsonl").read_text(encoding="utf-8").splitlines()]
JUNK = [json.loads(line) for line in (REPO / "tests/fixtures/filter_junk.jsonl").read_text(encoding="utf-8").splitlines()]


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

    def first(self, text: str) -> str | None:
        """The stage's drop reason (None: kept)."""
        return (self.reasons(text) or [None])[0]


@pytest.fixture(scope="session")
def verdicts(lid_model_path):
    return Verdicts(lid_model_path)


@pytest.fixture(scope="session")
def chinese_paragraphs(shared_data):
    lines = (shared_data / "text/zh/cmrc2018_contexts.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if len(line.strip()) >= 200]


@pytest.fixture(scope="session")
def chinese_paragraph_verdicts(verdicts, chinese_paragraphs):
    return [verdicts.first(t) for t in chinese_paragraphs]


@pytest.fixture(scope="session")
def english_articles(shared_data):
    lines = (shared_data / "text/en/wikitext-2-valid.articles.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines]


@pytest.fixture(scope="session")
def warcfile_pages(shared_data, tmp_path_factory):
    """{url: text} of the 16 real Common Crawl pages of ../shared/data/cc/resiliparse/warcfile.warc.gz
    (CC-MAIN-2020-34) as ingest extracts them, in one process (no Ray)."""
    import pyarrow.parquet as pq

    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.stage import run_part

    out = tmp_path_factory.mktemp("warcfile-ingest")
    stage = IngestStage(IngestConfig(inputs=[str(shared_data / "cc/resiliparse/warcfile.warc.gz")]))
    run_part(stage, stage.tasks()[0], str(out))
    return {row["url"]: row["text"] for row in pq.read_table(out / "part-00000.parquet").to_pylist()}
