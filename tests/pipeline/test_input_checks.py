"""What a stage says about an input folder it cannot read (pipeline/parts.py `input_parts`,
`check_input_columns`, run by the runner before any task): a folder no crawlmill stage wrote, a
finished folder whose part files no marker lists, parts without a column the stage reads or with
one of another type are user errors (exit status 2) naming the folder, the file and the column,
before anything runs; rows whose `text` or `id` is null are quarantined with their part and row
(filter, dedup), not a crash of the part with "rerun the same command to retry"."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.parts import commit_folder, input_parts

TEXTS = [f"Document {i}: the garden of the old house has many trees and a pond with fish in it, number {i}." for i in range(6)]


def _folder(path: Path, table: pa.Table, commit: bool = True) -> Path:
    """A folder of one Parquet part made outside a stage; `commit`: marked finished as a stage's
    (a marker per part and `_SUCCESS`, commit_folder)."""
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-00000.parquet")
    if commit:
        commit_folder(path)
    return path


def _documents(n: int = 6, **columns: list) -> pa.Table:
    data = {"id": [f"doc-{i}" for i in range(n)], "text": TEXTS[:n], "dump": ["CC-MAIN-2024-10"] * n, "lang": ["en"] * n}
    data.update(columns)
    return pa.table({k: v for k, v in data.items() if v is not None})


def _crawlmill(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    return result.exit_code, " ".join(result.output.split())  # unwrapped


def test_a_finished_folder_whose_parts_no_marker_lists_is_refused(tmp_path):
    """`_SUCCESS` and part files but no `_parts/` markers: every stage read 0 documents, exit 0."""
    folder = _folder(tmp_path / "copied", _documents(), commit=False)
    pq.write_table(_documents(), folder / "part-00001.parquet")
    (folder / "_SUCCESS").write_text("")
    with pytest.raises(FileNotFoundError) as refused:
        input_parts(folder)
    assert str(refused.value) == (
        f"{folder}: none of its 2 part files (part-00000.parquet, part-00001.parquet) is listed by a marker in _parts/, where a stage "
        "records each part it finished: the folder was not written by a crawlmill stage, or its markers are lost. Parquet files of your "
        "own: ingest them first: crawlmill ingest FILES --output DIR; a stage's output: delete its _SUCCESS and rerun that stage"
    )
    status, output = _crawlmill("filter", str(folder), "--output", str(tmp_path / "out"))
    assert status == 2 and "none of its 2 part files" in output and not (tmp_path / "out").exists(), output


def test_a_folder_of_ones_own_parquet_is_no_stage_folder(tmp_path):
    """Parquet files without any crawlmill marker: not "its stage has not finished (rerun it first)"."""
    folder = _folder(tmp_path / "mine", _documents(), commit=False)
    status, output = _crawlmill("dedup", str(folder), "--output", str(tmp_path / "out"))
    assert status == 2, output
    assert (
        f"error: {folder} has no _SUCCESS, no _parts/ markers and no _tasks.json: it is not a crawlmill stage output folder, and its "
        "1 Parquet file(s) were not written by a crawlmill stage; ingest them first: crawlmill ingest FILES --output DIR"
    ) in output
    # A stage's own folder, unfinished, is still that.
    (folder / "_tasks.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="has no _SUCCESS: its stage has not finished \\(rerun it first\\)"):
        input_parts(folder)


@pytest.mark.parametrize(
    ("verb", "table", "said"),
    [
        ("filter", _documents(id=None), "part-00000.parquet has no `id` column, which filter reads (its columns: text, dump, lang)"),
        ("filter", _documents(text=list(range(6))), "part-00000.parquet: column `text` is of type int64, where filter reads a string"),
        ("filter", _documents(text=[None] * 6), "part-00000.parquet: column `text` is of type null, where filter reads a string"),
        ("dedup", _documents(dump=None), "part-00000.parquet has no `dump` column, which dedup reads (its columns: id, text, lang)"),
        ("dedup", _documents(lang=[1.5] * 6), "part-00000.parquet: column `lang` is of type double, where dedup reads a string"),
        ("filter", _documents(warc_offset=["12"] * 6), "part-00000.parquet: column `warc_offset` is of type string, where filter reads an integer"),
    ],
    ids=["no-id", "text-int", "text-null-type", "dedup-no-dump", "dedup-lang-float", "offset-string"],
)
def test_a_missing_or_mistyped_column_is_a_user_error_before_anything_runs(tmp_path, verb, table, said):
    """Once each part failed at its first row or at write time (pyarrow's "Column 'id' is declared
    non-nullable but contains nulls", KeyError: 'Field "dump" does not exist in schema'), exit 1
    with "rerun the same command to retry"."""
    folder = _folder(tmp_path / "foreign", table)
    status, output = _crawlmill(verb, str(folder), "--output", str(tmp_path / "out"))
    assert status == 2 and f"error: {folder}: {said}" in output, output
    assert "rerun the same command" not in output and not (tmp_path / "out").exists()


def _nulls_folder(tmp_path: Path) -> Path:
    """A committed foreign part whose row 1 has no text and row 4 no id."""
    texts = [None if i == 1 else t for i, t in enumerate(TEXTS)]
    ids = [None if i == 4 else f"doc-{i}" for i in range(6)]
    return _folder(tmp_path / "foreign", _documents(text=texts, id=ids))


def _stats(out: Path) -> dict:
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["in"] == 6 and stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"], stats
    return stats


def test_filter_quarantines_rows_without_text_or_id_with_their_part_and_row(ray_local, tmp_path):
    """A null `text` failed filter's part ('NoneType' object has no attribute 'replace'), a null
    `id` its write (pyarrow: Column 'id' is declared non-nullable but contains nulls), exit 1."""
    folder = _nulls_folder(tmp_path)
    status, output = _crawlmill("filter", str(folder), "--output", str(tmp_path / "out"))
    assert status == 0, output
    assert _stats(tmp_path / "out")["quarantined"] == 2
    entries = pq.read_table(tmp_path / "out/_quarantine").to_pylist()
    part = str(folder / "part-00000.parquet")
    assert entries == [
        {"stage": "filter", "source": part, "offset": 1, "record_id": "doc-1", "error": "no_text", "detail": "row 1: its `text` is null"},
        {"stage": "filter", "source": part, "offset": 4, "record_id": None, "error": "no_id", "detail": "row 4: its `id` is null"},
    ], entries


def test_dedup_drops_rows_without_text_or_id_as_no_documents_duplicates(ray_local, tmp_path):
    """dedup's map step failed on a null `text` (normalize(None)); such rows are now in no band (no
    document's duplicate, never a cluster's representative), dropped as `no_text` / `no_id`, as its
    other removals, and left out of `_duplicates/` (they duplicate nothing)."""
    folder = _nulls_folder(tmp_path)
    pq.write_table(_documents(text=[TEXTS[0]] * 6, id=[f"copy-{i}" for i in range(6)]), folder / "part-00001.parquet")
    commit_folder(folder)  # a second part: six copies of doc-0's text, whose duplicate checks go on as before
    status, output = _crawlmill("dedup", str(folder), "--output", str(tmp_path / "out"))
    assert status == 0, output
    stats = json.loads((tmp_path / "out/_stats.json").read_text())
    assert stats["in"] == 12 and stats["dropped"] == {"exact_duplicate": 6, "no_id": 1, "no_text": 1} and stats["quarantined"] == 0, stats
    kept = [i for part in sorted((tmp_path / "out").glob("part-*.parquet")) for i in pq.read_table(part, columns=["id"])["id"].to_pylist()]
    assert kept == ["doc-2", "doc-3", "doc-5", "copy-0"]  # the keep rule: the smallest id of equals
    duplicates = {(row["id"], row["reason"], row["cluster"]) for row in pq.read_table(tmp_path / "out/_duplicates").to_pylist()}
    assert {reason for _, reason, _ in duplicates} == {"exact_duplicate"} and len(duplicates) == 6
