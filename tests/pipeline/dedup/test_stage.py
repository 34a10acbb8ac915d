"""Dedup end to end on real Ray over the sample corpus's two dumps (pages republished unchanged,
near-duplicate variants on other hosts, junk repeated across sites)."""

import json

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.runner import run_stage
from tests.conftest import SAMPLES
from tests.pipeline.dedup.conftest import DUMPS, folder_bytes



def run_dedup(inputs: list[str], out, **config):
    return run_stage(DedupStage(DedupConfig(inputs=inputs, **config)), out, progress=False)


@pytest.fixture(scope="module")
def deduped(ingested):
    out = ingested / "dedup"
    result = run_dedup([str(ingested / d) for d in DUMPS], out, partitions=4)
    assert result.ok
    return out, result.stats


def test_one_document_kept_per_cluster_and_every_removal_mapped(ingested, deduped):
    out, stats = deduped
    inputs = pq.read_table([str(p) for d in DUMPS for p in sorted((ingested / d).glob("part-*.parquet"))]).to_pylist()
    kept = pq.read_table([str(p) for p in sorted(out.glob("part-*.parquet"))], columns=["id"]).column("id").to_pylist()
    duplicates = pq.read_table(out / "_duplicates").to_pylist()
    assert stats["in"] == len(inputs) == len(kept) + len(duplicates)
    assert {d["id"] for d in duplicates}.isdisjoint(kept)
    assert {d["kept_id"] for d in duplicates} <= set(kept)  # every cluster keeps its representative
    assert set(stats["dropped"]) == {"exact_duplicate", "near_duplicate"}


def test_republished_pages_keep_their_first_publication(deduped):
    out, _ = deduped
    duplicates = pq.read_table(out / "_duplicates").to_pylist()
    manifest = [json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text().splitlines()]
    republished = {m["url"] for m in manifest if m.get("republished")}
    assert republished
    for d in duplicates:
        if d["url"] in republished and d["dump"] == "CC-MAIN-2024-10":
            assert d["kept_dump"] == "CC-MAIN-2023-50"
    assert {d["url"] for d in duplicates if d["reason"] == "exact_duplicate"} == republished
    variants = {m["url"] for m in manifest if m["kind"] == "near_duplicate"}
    assert variants <= {d["url"] for d in duplicates if d["reason"] == "near_duplicate"}


def test_report_is_table_1_style(deduped):
    out, stats = deduped
    report = json.loads((out / "_report/report.json").read_text())
    assert [r["dump"] for r in report["within_single_dump"]] == DUMPS
    single, cumulative = report["within_single_dump"], report["cumulative"]
    assert cumulative[0]["share"] == single[0]["share"]
    assert cumulative[-1]["removed"] == sum(stats["dropped"].values())  # all dumps together = the run
    assert cumulative[-1]["removed"] > single[0]["removed"] + single[1]["removed"]  # across dumps removes more
    assert (out / "_report/report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_run_twice_gives_the_same_output_and_resumes(ingested, deduped, tmp_path):
    out, _ = deduped
    again = tmp_path / "again"
    assert run_dedup([str(ingested / d) for d in DUMPS], again, partitions=4).ok
    assert folder_bytes(again) == folder_bytes(out)
    # A rerun after losing a step's marker redoes only that work and ends identical.
    next((again / "_work/_done/cc-0001").glob("*.json")).unlink()
    (again / "_SUCCESS").unlink()
    assert run_dedup([str(ingested / d) for d in DUMPS], again, partitions=4).ok
    assert folder_bytes(again) == folder_bytes(out)


def test_the_duplicates_are_beside_the_parts_under_a_name_parquet_readers_skip(ingested, deduped, tmp_path):
    """`pq.read_table(out)` (and Ray's read_parquet) read the kept documents alone; a folder an earlier
    version wrote (`duplicates/`) stays done when finished, and an unfinished one is refused rather
    than resumed into two folders of removal rows."""
    import shutil

    from crawlmill.pipeline.stage import StageInputMismatch

    out, stats = deduped
    assert pq.read_table(out).num_rows == stats["kept"] and "text" in pq.read_table(out).column_names
    assert pq.read_table(out / "_duplicates").num_rows == sum(stats["dropped"].values())
    older = tmp_path / "older"
    shutil.copytree(out, older)
    (older / "_duplicates").rename(older / "duplicates")
    record = json.loads((older / "_tasks.json").read_text())
    del record["settings"]["duplicates_dir"]
    (older / "_tasks.json").write_text(json.dumps(record))
    before = folder_bytes(older)
    assert run_dedup([str(ingested / d) for d in DUMPS], older, partitions=4).ok and folder_bytes(older) == before  # done, untouched
    (older / "_SUCCESS").unlink()
    with pytest.raises(StageInputMismatch, match="unfinished output of a dedup run by an earlier version"):
        run_dedup([str(ingested / d) for d in DUMPS], older, partitions=4)


def test_verification_in_small_chunks_changes_nothing_but_memory(ingested, deduped, tmp_path):
    out, _ = deduped
    chunked = tmp_path / "chunked"
    assert run_dedup([str(ingested / d) for d in DUMPS], chunked, partitions=4, verify_chunk_pairs=2).ok
    assert len(list((chunked / "_work/verify").glob("from-*-00001.shuffle"))) > 0  # really chunked
    differs = {k for k in folder_bytes(out).keys() | folder_bytes(chunked).keys() if folder_bytes(out).get(k) != folder_bytes(chunked).get(k)}
    assert differs <= {"_tasks.json"}, differs  # only the recorded settings differ


def test_incremental_index_matches_a_joint_run(ingested, deduped, tmp_path):
    """A later dump deduplicated against the index of an earlier run removes what a joint run of
    both dumps removes from it, and never touches the earlier run's documents."""
    out, _ = deduped
    index = tmp_path / "index"
    first = run_dedup([str(ingested / DUMPS[0])], tmp_path / "first", partitions=4, index=str(index))
    second = run_dedup([str(ingested / DUMPS[1])], tmp_path / "second", partitions=4, index=str(index))
    assert first.ok and second.ok
    joint = {d["id"]: (d["reason"], d["kept_dump"]) for d in pq.read_table(out / "_duplicates").to_pylist() if d["dump"] == DUMPS[1]}
    incremental = {d["id"]: (d["reason"], d["kept_dump"]) for d in pq.read_table(tmp_path / "second/_duplicates").to_pylist()}
    assert incremental == joint and incremental
    assert json.loads((index / "manifest.json").read_text())["runs"][1]["output"] == str((tmp_path / "second").resolve())
    report = json.loads((tmp_path / "second/_report/report.json").read_text())
    assert report["indexed_documents"] == json.loads((tmp_path / "first/_stats.json").read_text())["kept"]
    # The earlier dump's row is of kept documents only: the summary says why it shows none removed.
    assert report["indexed_dumps"] == [DUMPS[0]] and "indexed_dumps" not in json.loads((out / "_report/report.json").read_text())
    lines = DedupStage(DedupConfig(inputs=[str(ingested / DUMPS[1])], partitions=4, index=str(index))).report(second)
    assert any(line.startswith(f"first 1 dump(s) through {DUMPS[0]}: 0.0% removed (the index's kept documents") for line in lines), lines
    # The earlier run's output is untouched and a rerun of the second run changes nothing.
    before = folder_bytes(tmp_path / "second")
    assert run_dedup([str(ingested / DUMPS[1])], tmp_path / "second", partitions=4, index=str(index)).ok
    assert folder_bytes(tmp_path / "second") == before
