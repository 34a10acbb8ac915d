"""Your own corpus among ingest's inputs (pipeline/ingest/corpus_files.py): which files are JSONL,
Parquet or text, what a folder search takes beside WARC files, the names ids are made from, and the
dataset label in `dump`. No Ray: the inputs are resolved on the driver."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.corpus_files import corpus_kind, corpus_name, glob_root
from crawlmill.pipeline.ingest.sources import InputError, expand_inputs, named_inputs, resolve_named_sources


def make(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_kinds_by_name():
    assert [corpus_kind(n) for n in ["a.jsonl", "a.JSONL.gz", "a.ndjson", "c4-train.00000-of-01024.json.gz", "x.json", "t.parquet", "t.txt", "t.txt.gz"]] == [
        "jsonl", "jsonl", "jsonl", "jsonl", "jsonl", "parquet", "text", "text"]  # fmt: skip
    assert [corpus_kind(n) for n in ["a.warc.gz", "b.warc.wet.gz", "x.dat", "s3://b/folder.parquet/"]] == [None] * 4


def test_a_folder_search_takes_warc_files_or_else_the_corpus_files(tmp_path, capsys):
    names = lambda paths: [Path(p).relative_to(tmp_path).as_posix() for p in paths]
    # A crawl folder: only its archives, whatever lies beside them (samples/ has manifest.jsonl).
    make(tmp_path / "crawl", ["a.warc.gz", "manifest.jsonl", "notes.txt", "x.parquet"])
    assert names(expand_inputs([str(tmp_path / "crawl")])) == ["crawl/a.warc.gz"]
    # ... and says which corpus files it left out (before: not a word).
    assert "2 .jsonl/.parquet file(s) beside its WARC/WET files are not read" in capsys.readouterr().err
    # A corpus folder: JSONL and Parquet; not .txt or .json (READMEs, dataset_info.json), not _/. names,
    # not a crawlmill stage output folder written inside it (its parts would be read back as input).
    make(tmp_path / "mine", [
        "a.jsonl", "b.jsonl.gz", "c4.json.gz", "d.ndjson", "sub/e.parquet", "README.txt", "dataset_info.json",
        "_SUCCESS", ".cache/f.jsonl", "_tmp/g.jsonl", "out/_tasks.json", "out/part-00000.parquet", "out/_quarantine/part-00000.parquet"])  # fmt: skip
    assert names(expand_inputs([str(tmp_path / "mine")])) == ["mine/a.jsonl", "mine/b.jsonl.gz", "mine/c4.json.gz", "mine/d.ndjson", "mine/sub/e.parquet"]
    # Named or globbed, a .txt or .json file is read (as text, as JSONL).
    assert names(expand_inputs([str(tmp_path / "mine/README.txt"), str(tmp_path / "mine/*.json")])) == ["mine/README.txt", "mine/dataset_info.json"]
    # A folder of .txt only says how to read them.
    make(tmp_path / "zh", ["cmrc.txt", "daily.txt"])
    with pytest.raises(InputError) as error:
        expand_inputs([str(tmp_path / "zh")])
    assert str(error.value) == (f"{tmp_path / 'zh'}: the folder holds no .warc/.wet(.gz) file; nor .jsonl/.parquet file, and its 2 .txt/.json "
                                f"file(s) are read only when named or matched by a glob (e.g. '{tmp_path / 'zh'}/**/*.txt')")  # fmt: skip
    # A stage output folder given to ingest: said so.
    with pytest.raises(InputError, match="it holds crawlmill stage output: give that folder to filter or dedup"):
        expand_inputs([str(tmp_path / "mine/out")])


def test_names_come_from_the_inputs_folder_however_it_is_named(tmp_path, monkeypatch):
    make(tmp_path / "data/mine", ["a.jsonl", "sub/b.jsonl"])
    monkeypatch.chdir(tmp_path)
    a, b = str(tmp_path / "data/mine/a.jsonl"), str(tmp_path / "data/mine/sub/b.jsonl")
    expected = {a: "mine/a.jsonl", b: "mine/sub/b.jsonl"}
    assert named_inputs(["data/mine"]) == expected
    assert named_inputs(["data/mine/**/*.jsonl"]) == expected
    assert named_inputs([str(tmp_path / "data/mine") + "/"]) == expected
    assert named_inputs(["data/mine/a.jsonl"]) == {a: "mine/a.jsonl"}
    assert named_inputs(["data/mine/sub/b.jsonl"]) == {b: "sub/b.jsonl"}  # a named file: its own folder
    assert glob_root("data/mine/*.jsonl") == "data/mine" and glob_root("*.jsonl") == "" and glob_root("/x/*/y.jsonl") == "/x"
    assert corpus_name("bucket/data/mine/a.jsonl", "bucket/data/mine") == "mine/a.jsonl"
    assert corpus_name("/x/a.jsonl", "/x") == "x/a.jsonl" and corpus_name("/a.jsonl", "/") == "a.jsonl"


def test_two_files_of_one_run_with_the_same_name_are_refused(tmp_path):
    make(tmp_path, ["x/data/part.jsonl", "y/data/part.jsonl", "y/data/other.jsonl"])
    with pytest.raises(InputError, match=r"would give their documents the same ids \(both are data/part.jsonl"):
        resolve_named_sources([str(tmp_path / "x/data"), str(tmp_path / "y/data")])
    # Named by their parents' folders they differ: x/data/part.jsonl and y/data/part.jsonl.
    assert sorted(resolve_named_sources([str(tmp_path / "x"), str(tmp_path / "y")]).values()) == ["x/data/part.jsonl", "y/data/other.jsonl", "y/data/part.jsonl"]


def test_a_per_dump_run_refuses_corpus_files_that_name_no_dump(tmp_path):
    make(tmp_path, ["crawl-data/CC-MAIN-2024-10/x.warc.gz", "mine/a.jsonl"])
    with pytest.raises(InputError, match="this file of your own corpus names no dump"):
        resolve_named_sources([str(tmp_path / "crawl-data"), str(tmp_path / "mine/a.jsonl")], only_dump="CC-MAIN-2024-10")


def test_dump_takes_a_dataset_label_for_input_files_only():
    assert IngestConfig(inputs=["x.jsonl"], dump="my-forum-2024").dump == "my-forum-2024"
    for bad, message in [("my forum", "a dataset label is letters"), ("../x", "a dataset label is letters"), ("CC-MAIN-24", "not a Common Crawl dump id")]:
        with pytest.raises(ValueError, match=message):
            IngestConfig(inputs=["x.jsonl"], dump=bad)
    with pytest.raises(ValueError, match="not a Common Crawl dump id"):
        IngestConfig(dump="my-forum-2024")  # without inputs --dump names a listing
    assert IngestConfig(inputs=["x"], id_field="", url_field="").id_field is None
    with pytest.raises(ValueError, match="txt_document 'page': choose one of line, paragraph"):
        IngestConfig(inputs=["x"], txt_document="page")


def test_the_verb_sets_the_corpus_options(tmp_path):
    result = CliRunner().invoke(app, ["ingest", str(tmp_path), "--text-field", "body", "--id-field", "", "--url-field", "meta.url",
                                      "--txt-document", "paragraph", "--dump", "mine", "--output", str(tmp_path / "o"), "--print-config"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert '"text_field": "body"' in result.stdout and '"id_field": null' in result.stdout and '"url_field": "meta.url"' in result.stdout
    assert '"txt_document": "paragraph"' in result.stdout and '"dump": "mine"' in result.stdout
