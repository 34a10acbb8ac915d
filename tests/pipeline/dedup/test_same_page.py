"""Documents with the same `id` are one capture (ingest derives the id from the page's response
record, so its WARC extraction and its WET text share it): dedup keeps one of them whatever their
texts and removes the others as `same_page`.

The sample corpus ingested as a whole folder (docs/ingest.md: `crawlmill ingest
samples/crawl-data`) holds every page twice, from its WARC and its WET file; the WET text keeps the
navigation, so neither the exact hash nor MinHash links the two."""

import json
import shutil
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.dedup import index, steps
from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.dedup.shuffle import read_partition
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageInputMismatch
from tests.conftest import SAMPLES

WARC_FILES = str(SAMPLES / "crawl-data/*/segments/*/warc/*.warc.gz")
WET_FILES = str(SAMPLES / "crawl-data/*/segments/*/wet/*.warc.wet.gz")


def rows(folder, columns=None):
    return pq.read_table([str(p) for p in sorted(folder.glob("part-*.parquet"))], columns=columns).to_pylist()


def ingest(inputs, out):
    assert run_stage(IngestStage(IngestConfig(inputs=inputs)), out, progress=False).ok
    return out


def dedup(inputs, out, **config):
    stage = DedupStage(DedupConfig(inputs=[str(i) for i in inputs], partitions=4, **config))
    result = run_stage(stage, out, progress=False)
    assert result.ok
    return stage, result


@pytest.fixture(scope="module")
def whole_folder(ray_local, tmp_path_factory):
    """samples/crawl-data ingested as one folder (WARC + WET of the same crawl files), deduplicated."""
    root = tmp_path_factory.mktemp("same_page")
    ingested = ingest([str(SAMPLES / "crawl-data")], root / "ingest")
    _, result = dedup([ingested], root / "dedup")
    return root, result.stats


def test_one_document_per_id_and_the_others_removed_as_same_page(whole_folder):
    root, stats = whole_folder
    docs = rows(root / "ingest")
    ids = Counter(d["id"] for d in docs)
    assert len(ids) < len(docs) and max(ids.values()) == 2  # the premise: WARC and WET share ids
    kept = rows(root / "dedup")
    duplicates = pq.read_table(root / "dedup/_duplicates").to_pylist()
    kept_ids = Counter(d["id"] for d in kept)
    assert max(kept_ids.values()) == 1  # at most one document per id
    assert stats["in"] == len(docs) == len(kept) + len(duplicates) == stats["kept"] + sum(stats["dropped"].values())
    assert len(kept) == stats["kept"] and stats["quarantined"] == 0
    assert Counter(d["id"] for d in duplicates) + kept_ids == ids  # every input row once, kept or mapped
    assert {d["kept_id"] for d in duplicates} <= set(kept_ids)
    kept_for = {}  # both copies of a page removed (for another page): one cluster, one kept document
    for d in duplicates:
        assert kept_for.setdefault(d["id"], (d["cluster"], d["kept_id"])) == (d["cluster"], d["kept_id"])
    same_page = [d for d in duplicates if d["reason"] == "same_page"]
    assert stats["dropped"]["same_page"] == len(same_page) > 0
    assert all(d["kept_id"] == d["id"] for d in same_page)  # removed for its own capture's other copy
    # Every id the corpus has twice ends with one copy: either the pair within a cluster of its
    # own page (same_page), or both copies removed for another page's copy (republished pages).
    twice = {i for i, n in ids.items() if n == 2}
    assert {d["id"] for d in same_page} <= twice
    assert twice - {d["id"] for d in same_page} <= {d["id"] for d in duplicates if d["reason"] != "same_page"}
    # The other reasons keep their meaning: never between two copies of one page.
    assert all(d["kept_id"] != d["id"] for d in duplicates if d["reason"] != "same_page")
    assert {"exact_duplicate", "near_duplicate"} <= set(stats["dropped"])


def test_the_warc_extraction_is_kept_rather_than_the_wet_text(whole_folder):
    root, _ = whole_folder
    docs = rows(root / "ingest", ["id", "source_format"])
    with_warc = {d["id"] for d in docs if d["source_format"] == "warc"}
    kept = rows(root / "dedup", ["id", "source_format"])
    # Within a dump (earliest_dump's tie) the WARC copy wins, though the WET text is longer.
    assert all(d["source_format"] == "warc" for d in kept if d["id"] in with_warc)
    assert any(d["source_format"] == "wet" for d in kept)  # the navigation-only page has only its WET text


def test_report_counts_the_same_page_pairs(whole_folder):
    root, stats = whole_folder
    report = json.loads((root / "dedup/_report/report.json").read_text())
    assert report["same_page_pairs"] >= stats["dropped"]["same_page"]
    assert report["cumulative"][-1]["removed"] == sum(stats["dropped"].values())
    assert sum(r["documents"] for r in report["within_single_dump"]) == stats["in"]


def test_same_run_twice_gives_the_same_output(whole_folder, tmp_path):
    root, _ = whole_folder
    dedup([root / "ingest"], tmp_path / "again")
    for name in ["_stats.json", "_report/report.json", *(str(p.relative_to(root / "dedup")) for p in sorted((root / "dedup").rglob("part-*.parquet")))]:
        assert (tmp_path / "again" / name).read_bytes() == (root / "dedup" / name).read_bytes(), name


def test_a_work_folder_of_an_older_format_is_recomputed_not_resumed(whole_folder, tmp_path):
    """`_work/` of a version before the id band (map's rows without ID_BAND, its record without a
    work format) is refused like other settings, never resumed without its same_page pairs;
    --overwrite recomputes it. A finished folder of that version stays done: nothing resumes."""
    root, stats = whole_folder
    out = tmp_path / "dedup"

    def run(overwrite=False):
        return run_stage(DedupStage(DedupConfig(inputs=[str(root / "ingest")], partitions=4)), out, progress=False, overwrite=overwrite)

    assert run().ok
    record = json.loads((out / "_tasks.json").read_text())
    record["settings"].pop("work_format", None)
    (out / "_tasks.json").write_text(json.dumps(record))
    assert run().already_done and json.loads((out / "_tasks.json").read_text()) == record
    # Now as that version left it when killed after map: its map rows and markers only.
    keep = {out: ("_tasks.json", "_work"), out / "_work": (steps.BUCKETS, steps.NODES, "_done"), out / "_work/_done": ("map",)}
    for folder, names in keep.items():
        for path in folder.iterdir():
            if path.name not in names:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    # (its bucket rows lacked the id band: never read, the record's missing work_format refuses them first)
    with pytest.raises(StageInputMismatch, match="--overwrite"):
        run()
    result = run(overwrite=True)
    assert result.ok and result.stats == stats and result.stats["dropped"]["same_page"] > 0
    assert json.loads((out / "_tasks.json").read_text())["settings"]["work_format"] == steps.WORK_FORMAT


def test_an_id_in_the_index_removes_its_other_copy_in_a_later_run(ray_local, tmp_path):
    """WARC extractions deduplicated first (into an index), the WET texts of the same captures
    later: each WET document whose page an earlier run kept is removed as same_page."""
    warc, wet = ingest([WARC_FILES], tmp_path / "warc"), ingest([WET_FILES], tmp_path / "wet")
    dedup([warc], tmp_path / "first", index=str(tmp_path / "index"))
    # An index written before the `wet` column existed still loads (and gives the id rows).
    for path in (tmp_path / "index").glob("run-0000/part-*-nodes.parquet"):
        pq.write_table(pq.read_table(path).drop_columns(["wet"]), path)
    _, second = dedup([wet], tmp_path / "second", index=str(tmp_path / "index"))
    earlier = {d["id"] for d in rows(tmp_path / "first", ["id"])}
    duplicates = pq.read_table(tmp_path / "second/_duplicates").to_pylist()
    kept = {d["id"] for d in rows(tmp_path / "second", ["id"])}
    assert kept.isdisjoint(earlier)  # no page kept twice across the runs
    same_page = {d["id"] for d in duplicates if d["reason"] == "same_page"}
    assert same_page and all(d["kept_id"] == d["id"] for d in duplicates if d["reason"] == "same_page")
    assert same_page <= earlier
    assert second.stats["in"] == second.stats["kept"] + sum(second.stats["dropped"].values())
    report = json.loads((tmp_path / "second/_report/report.json").read_text())
    assert report["indexed_documents"] == len(earlier)


def test_load_indexed_part_derives_the_id_rows(tmp_path):
    """An index's stored bucket rows have no id band: loading derives it from the nodes' ids."""
    ids = ["a", "b", None]
    prefix = tmp_path / "run-0000/part-00000"
    prefix.parent.mkdir(parents=True)
    nodes = pa.table({"node": np.arange(3, dtype=np.int64), "id": ids, "dump": np.array([202350, 0, 0], np.int32), "length": np.ones(3, np.int64),
                      "exact_hi": np.zeros(3, np.uint64), "exact_lo": np.arange(3, dtype=np.uint64), "indexed": np.zeros(3, bool)})  # fmt: skip
    pq.write_table(nodes, f"{prefix}-nodes.parquet")  # an old index: no `wet` column
    buckets = pa.table({"band": np.full(3, steps.EXACT_BAND, np.int16), "key": np.arange(3, dtype=np.uint64), "key2": np.zeros(3, np.uint64),
                        "node": np.arange(3, dtype=np.int64), "dump": np.array([202350, 0, 0], np.int32)}, schema=steps.BUCKET_SCHEMA)  # fmt: skip
    pq.write_table(buckets, f"{prefix}-buckets.parquet")
    work = tmp_path / "work"
    index.load_indexed_parts(DedupConfig(), str(work), "index-00005", [(5, str(prefix))], 2)
    loaded = pa.concat_tables([read_partition(work / steps.BUCKETS, p, steps.BUCKET_SCHEMA) for p in range(2)])
    id_rows = loaded.filter(pa.array(loaded.column("band").to_numpy() == steps.ID_BAND))
    expected = steps.id_bucket_rows(ids, (5 << 32) + np.arange(3), np.array([202350, 0, 0])).to_pylist()
    assert [r["node"] for r in expected] == [5 << 32, (5 << 32) | 1]  # the document without an id has none
    assert sorted(id_rows.to_pylist(), key=lambda r: r["node"]) == expected
    loaded_nodes = pa.concat_tables([read_partition(work / steps.NODES, p, steps.NODE_SCHEMA) for p in range(2)])
    assert loaded_nodes.num_rows == 3 and not any(loaded_nodes.column("wet").to_pylist()) and all(loaded_nodes.column("indexed").to_pylist())
