"""Ingest of the sample corpus that ships in samples/ (runs in any clone, no ../shared needed),
checked against the generator's ground truth: samples/manifest.jsonl and samples/pages/*.yaml."""

import json
import sys
from collections import Counter

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from tests.conftest import SAMPLES

sys.path.insert(0, str(SAMPLES))
import make_samples  # noqa: E402


@pytest.fixture(scope="module")
def manifest():
    return [json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def ingested(ray_local, tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "warc"
    stage = IngestStage(IngestConfig(inputs=[str(SAMPLES / "crawl-data/*/segments/*/warc/*.warc.gz")]))
    assert len(stage.files) == 4
    result = run_stage(stage, out, progress=False)
    assert result.ok
    return result.stats, pq.read_table(out).to_pylist()


def test_every_html_page_of_both_dumps_becomes_one_document(ingested, manifest):
    stats, docs = ingested
    pages = [m for m in manifest if m["status"] == 200 and m["content_type"] == "text/html"]
    # The navigation-only junk page has no main content: dropped as empty_text, by name.
    nav_only = [m for m in pages if m.get("junk_type") == "nav_only"]
    assert stats["dropped"]["empty_text"] == len(nav_only) == 1
    pages = [m for m in pages if m not in nav_only]
    assert stats["kept"] == len(docs) == len(pages)
    assert Counter(d["dump"] for d in docs) == Counter(m["dump"] for m in pages)
    assert {d["warc_record_id"] for d in docs} == {m["response_record_id"] for m in pages}
    specials = [m for m in manifest if m not in pages]
    assert stats["dropped"]["http_error"] == sum(m["status"] == 404 for m in specials)
    assert stats["dropped"]["http_redirect"] == sum(m["status"] == 301 for m in specials)
    assert stats["dropped"]["not_html"] == sum(m["content_type"] == "image/png" for m in specials)
    assert stats["quarantined"] == 0


def test_main_text_matches_the_ground_truth_in_every_charset(ingested, manifest):
    _, docs = ingested
    _, pages, _ = make_samples.load_corpus()
    by_slug = {p["slug"]: p for p in pages}
    by_record = {m["response_record_id"]: m for m in manifest}
    charsets = Counter()
    for doc in docs:
        entry = by_record[doc["warc_record_id"]]
        page = by_slug[entry["slug"]]
        charsets[entry["charset"]] += 1
        if entry["kind"] == "junk":
            continue
        for paragraph in page["main"]:
            assert paragraph.strip() in doc["text"], (entry["slug"], entry["charset"], paragraph[:40])
        assert "\ufffd" not in doc["text"]
        assert "Cookie" not in doc["text"].split("\n")[0]
    assert charsets["gbk"] >= 2 and charsets["gb18030"] >= 1


def test_wet_and_warc_of_the_samples_agree_on_ids(ray_local, ingested, tmp_path):
    _, warc_docs = ingested
    out = tmp_path / "wet"
    result = run_stage(IngestStage(IngestConfig(inputs=[str(SAMPLES / "crawl-data")])), out, progress=False)
    wet_docs = [d for d in pq.read_table(out).to_pylist() if d["source_format"] == "wet"]
    # WET keeps all of a page's text, so the navigation-only page is a WET document too.
    assert {d["id"] for d in warc_docs} < {d["id"] for d in wet_docs}
    assert len(wet_docs) == len(warc_docs) + 1
    assert result.stats["kept"] == len(warc_docs) + len(wet_docs)
