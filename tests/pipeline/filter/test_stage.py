"""The filter stage on real Ray over ingest output: the repo's sample corpus (clean, junk, near
duplicates in English and Chinese) and the 16 real Common Crawl pages of CC-MAIN-2020-34."""

import json

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.stage import FilterStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageInputMismatch
from tests.conftest import SAMPLES


def folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def samples_filtered(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("filter-samples")
    assert run_stage(IngestStage(IngestConfig(inputs=[str(SAMPLES / "crawl-data")])), root / "ingest", progress=False).ok
    result = run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")], keep_dropped=True)), root / "filter", progress=False)
    assert result.ok
    return root, result.stats


def test_sample_clean_pages_kept_and_junk_dropped_in_both_languages(samples_filtered):
    root, stats = samples_filtered
    manifest = {json.loads(line)["url"]: json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text().splitlines()}
    kept = pq.read_table(root / "filter").to_pylist()
    dropped = pq.read_table(root / "filter/_dropped").to_pylist()
    assert stats["in"] == len(kept) + len(dropped) == stats["kept"] + sum(stats["dropped"].values())
    html = [d for d in kept + dropped if d["source_format"] == "warc"]
    for doc in html:
        entry = manifest[doc["url"]]
        if entry["kind"] == "junk":
            assert doc.get("drop_reason"), f"junk page {entry['slug']} was kept"
        else:
            assert not doc.get("drop_reason"), f"clean page {entry['slug']} dropped: {doc['drop_reason']}"
            assert doc["lang"] == entry["lang"] and doc["lang_score"] >= 0.65
    assert stats["counters"]["lang_kept:en"] > 20 and stats["counters"]["lang_kept:zh"] > 20
    assert all(d["lang"] for d in kept + dropped)


def test_unfinished_input_is_refused(tmp_path):
    (tmp_path / "part-00000.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has no _SUCCESS"):
        FilterStage(FilterConfig(inputs=[str(tmp_path)]))


def test_filter_output_is_deterministic(ray_local, samples_filtered, tmp_path):
    root, _ = samples_filtered
    run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")], keep_dropped=True)), tmp_path / "again", progress=False)
    assert folder_bytes(tmp_path / "again") == folder_bytes(root / "filter")


# Which of the 16 HTTP responses of ../shared/data/cc/resiliparse/warcfile.warc.gz (CC-MAIN-2020-34)
# are kept, and why the others are dropped (also in BENCHMARKS.md). Most are spam, gambling or
# adult pages, menus or error pages; the one kept is a company's English "about us" page.
WARCFILE_REPORT = {
    "http://003338.cn/l41/481397.html": "gopher_quality:gopher_below_alpha_threshold",  # mojibake in the page
    "http://01spb.ru/company/": "lang_not_kept",  # Russian
    "http://035.psb556.com/24/i/u_1090813/article.html": "c4:too_few_sentences",  # "page not found" text
    "http://037426.cn/": None,
    "http://041696.com/15477/list_6_4.html": "gopher_quality:gopher_below_alpha_threshold",  # price list
    "http://044545.com/topic/20200207/015849.html": "fineweb:char_dup_ratio",  # gambling forum spam
    "http://0513mt.com/index.php/art/detail/id/8884.html": "fineweb:char_dup_ratio",  # adult site
    "http://05925.net/index.php/vod/type/id/53.html": "gopher_quality:gopher_short_doc",
    "http://06.live-radsport.ch/fahrerstatistik_801/Anthony_Ravard.html": "lang_not_kept",  # German
    "http://06.live-radsport.ch/tippspiel/stats_140_petzi.html": "lang_not_kept",  # German
    "http://0615235.com/02mjqjo%7Bibotij2.btq?odmbtt=106&tdmbtt=121": "lang_low_score",  # product codes
    "http://0755krk.com/76104/list_4_1.html": "gopher_quality:gopher_short_doc",  # pagination
    "http://0760.jxtdw.com/area/sanxiang/": "c4:too_few_sentences",  # job-board menu
    "http://077678u.info/erxiaoshujinguang/list_6_2.html": "gopher_quality:gopher_too_many_bullets",  # lottery links
    "http://0900-hovenier.nl/gelderland/oosterbeek/": "lang_not_kept",  # Dutch
    "http://096355.com/video/11073.html?11073-0-2": "lang_low_score",  # adult video title
}


def test_report_on_the_16_common_crawl_pages(ray_local, shared_data, tmp_path):
    source = shared_data / "cc/resiliparse/warcfile.warc.gz"
    assert run_stage(IngestStage(IngestConfig(inputs=[str(source)])), tmp_path / "ingest", progress=False).ok
    assert run_stage(FilterStage(FilterConfig(inputs=[str(tmp_path / "ingest")], keep_dropped=True)), tmp_path / "filter", progress=False).ok
    rows = pq.read_table(tmp_path / "filter").to_pylist() + pq.read_table(tmp_path / "filter/_dropped").to_pylist()
    assert {r["url"]: r.get("drop_reason") for r in rows} == WARCFILE_REPORT


def test_keep_dropped_asked_of_a_finished_folder_made_without_it_is_refused_not_ignored(samples_filtered, tmp_path):
    """`--keep-dropped` on a finished filter folder printed "already finished" and wrote no _dropped/."""
    root, _ = samples_filtered
    out = tmp_path / "filter"
    assert run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")])), out, progress=False).ok
    with pytest.raises(StageInputMismatch, match=r"keep_dropped: \(none\) -> true.*--overwrite"):
        run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")], keep_dropped=True)), out, progress=False)
    assert run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")])), out, progress=False).already_done
    redone = run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")], keep_dropped=True)), out, progress=False, overwrite=True)
    assert redone.ok and pq.read_table(out / "_dropped").num_rows == sum(redone.stats["dropped"].values())


def test_a_folder_an_earlier_version_made_with_keep_dropped_stays_done_when_rerun_with_it(samples_filtered, tmp_path):
    """Its record lacks the setting (it was not recorded then); its _dropped/ shows it."""
    root, _ = samples_filtered
    out = tmp_path / "filter"
    made = run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")], keep_dropped=True)), out, progress=False)
    record = json.loads((out / "_tasks.json").read_text())
    del record["settings"]["keep_dropped"]
    (out / "_tasks.json").write_text(json.dumps(record))
    again = run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")], keep_dropped=True)), out, progress=False)
    assert made.ok and again.already_done

