"""The dedup report's tables cover every document: those without a Common Crawl dump (a file
with no warcinfo and no crawl-data path: dump null) are a row of their own, "(no dump)". Its
counts come from partitions of components and add up to those of the whole edge list."""

import json

import numpy as np
import pyarrow.parquet as pq
from fastwarc.warc import ArchiveIterator, WarcRecordType

from crawlmill.pipeline.dedup import steps
from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.dedup.report import NO_DUMP, _removed, report_dumps, report_map, report_reduce, write_report
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageResult
from tests.conftest import SAMPLES

A, B = steps.dump_code("CC-MAIN-2023-50"), steps.dump_code("CC-MAIN-2024-10")


def report_of(edges, docs_per_dump, work, output, partitions=2):
    """The stage's report steps on `edges` (src, dst, src dump, dst dump): components, then
    report_map and report_reduce per partition, then write_report."""
    config = DedupConfig()
    steps.write_edges(work, "exact-00000", steps._edge_table(np.asarray(edges, dtype=np.int64)), partitions)
    round_no = 0
    while True:
        changed = sum(steps.cc_round(config, str(work), round_no, p, partitions)["changed"] for p in range(partitions))
        if round_no > 0 and changed == 0:
            break
        round_no += 1
    for p in range(partitions):
        report_map(config, str(work), round_no, p, partitions)
    codes = [steps.dump_code(d) for d in report_dumps(docs_per_dump)[0]]
    return write_report(output, docs_per_dump, {}, [report_reduce(config, str(work), p, codes) for p in range(partitions)])


def test_documents_without_a_dump_are_a_row_of_both_tables(tmp_path):
    work, output = tmp_path / "_work", tmp_path / "out"
    # (src, dst, src dump, dst dump): one duplicate within each dump and within the undumped
    # documents, one across the named dumps, one between a named dump and no dump.
    edges = [(1, 2, A, A), (10, 11, B, B), (3, 12, A, B), (20, 21, 0, 0), (4, 22, A, 0)]
    docs_per_dump = {"": 3, "CC-MAIN-2023-50": 4, "CC-MAIN-2024-10": 3}
    report = report_of(edges, docs_per_dump, work, output)
    assert report == json.loads((output / "_report/report.json").read_text())
    single = {r["dump"]: (r["documents"], r["removed"]) for r in report["within_single_dump"]}
    assert single == {"CC-MAIN-2023-50": (4, 1), "CC-MAIN-2024-10": (3, 1), NO_DUMP: (3, 1)}
    assert [r["dump"] for r in report["within_single_dump"]] == ["CC-MAIN-2023-50", "CC-MAIN-2024-10", NO_DUMP]
    cumulative = [(r["dumps"], r["through"], r["documents"], r["removed"]) for r in report["cumulative"]]
    assert cumulative == [(1, "CC-MAIN-2023-50", 4, 1), (2, "CC-MAIN-2024-10", 7, 3), (3, NO_DUMP, 10, 5)]
    assert sum(docs_per_dump.values()) == sum(r["documents"] for r in report["within_single_dump"]) == report["cumulative"][-1]["documents"]
    assert report["docs_per_dump"] == docs_per_dump
    assert (output / "_report/report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = DedupStage(DedupConfig()).report(StageResult(stats={"in": 10, "kept": 5, "dropped": {"exact_duplicate": 5}}, output_dir=output))
    assert lines[-3:] == [
        "first 1 dump(s) through CC-MAIN-2023-50: 25.0% removed",
        "first 2 dump(s) through CC-MAIN-2024-10: 42.9% removed",
        f"all 2 dump(s) and 3 document(s) of {NO_DUMP}: 50.0% removed",
    ]


def test_only_undumped_documents(tmp_path):
    report = report_of([(1, 2, 0, 0)], {"": 5}, tmp_path / "_work", tmp_path / "out")
    assert report["within_single_dump"] == [{"dump": NO_DUMP, "documents": 5, "removed": 1, "share": 0.2}]
    assert report["cumulative"] == [{"dumps": 1, "through": NO_DUMP, "documents": 5, "removed": 1, "share": 0.2}]
    lines = DedupStage(DedupConfig()).report(StageResult(stats={}, output_dir=tmp_path / "out"))
    assert lines[-1] == f"5 document(s) of {NO_DUMP}: 20.0% removed"


def test_named_dumps_alone_report_as_before(tmp_path):
    report = report_of([(1, 2, A, B)], {"CC-MAIN-2023-50": 2, "CC-MAIN-2024-10": 2}, tmp_path / "_work", tmp_path / "out")
    assert [r["dump"] for r in report["within_single_dump"]] == ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]
    assert [r["removed"] for r in report["cumulative"]] == [0, 1]


def test_partitions_add_up_to_the_whole_edge_list(tmp_path):
    """Random duplicate graphs over five dumps and undumped documents, in 7 partitions: every row
    of both tables equals the count over the whole edge list in one process."""
    rng = np.random.default_rng(7)
    dump_names = ["CC-MAIN-2023-06", "CC-MAIN-2023-14", "CC-MAIN-2023-23", "CC-MAIN-2023-40", "CC-MAIN-2023-50", ""]
    codes = np.array([steps.dump_code(d) for d in dump_names])
    nodes = rng.choice(1 << 40, size=3000, replace=False)
    node_dump = codes[rng.integers(0, len(codes), size=len(nodes))]
    # Chains, stars and cycles: components whose restriction to a set of dumps splits.
    a, b = rng.integers(0, len(nodes), size=(2, 2500))
    a, b = a[a != b], b[a != b]
    edges = np.stack([nodes[a], nodes[b], node_dump[a], node_dump[b]], axis=1)
    docs_per_dump = {d: int(np.sum(node_dump == c)) + 100 for d, c in zip(dump_names, codes)}
    report = report_of(edges, docs_per_dump, tmp_path / "_work", tmp_path / "out", partitions=7)
    src, dst, src_dump, dst_dump = edges.T
    named = (src_dump > 0) & (dst_dump > 0)
    for row, code in zip(report["within_single_dump"], codes):
        assert row["removed"] == _removed(src[(src_dump == code) & (dst_dump == code)], dst[(src_dump == code) & (dst_dump == code)]) > 0
    for row, code in zip(report["cumulative"], codes):
        upto = named & (src_dump <= code) & (dst_dump <= code) if code else np.ones(len(src), bool)
        assert row["removed"] == _removed(src[upto], dst[upto]) > 0
    assert report["cumulative"][-1]["removed"] == len(np.unique(np.r_[src, dst])) - _components(src, dst)


def _components(src, dst):
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for s, d in zip(src.tolist(), dst.tolist()):
        parent[find(s)] = find(d)
    return len({find(x) for x in parent})


def without_warcinfo(source, target):
    """A copy of a WARC file without its warcinfo record: ingest then knows no dump for it."""
    data = source.read_bytes()
    with open(source, "rb") as stream:
        offsets = [(rec.stream_pos, rec.record_type) for rec in ArchiveIterator(stream, parse_http=False)]
    ends = [pos for pos, _ in offsets[1:]] + [len(data)]
    target.write_bytes(b"".join(data[pos:end] for (pos, kind), end in zip(offsets, ends) if kind != WarcRecordType.warcinfo))
    return target


def test_a_run_with_undumped_documents_reports_them(ray_local, tmp_path):
    warc = min((SAMPLES / "crawl-data/CC-MAIN-2023-50").rglob("*.warc.gz"))
    loose = without_warcinfo(warc, tmp_path / "loose.warc.gz")
    named = tmp_path / "named"
    assert run_stage(IngestStage(IngestConfig(inputs=[str(warc)])), named, progress=False).ok
    undumped = tmp_path / "undumped"
    assert run_stage(IngestStage(IngestConfig(inputs=[str(loose)])), undumped, progress=False).ok
    assert {d["dump"] for d in pq.read_table(undumped, columns=["dump"]).to_pylist()} == {None}
    stage = DedupStage(DedupConfig(inputs=[str(named), str(undumped)], partitions=4))
    result = run_stage(stage, tmp_path / "dedup", progress=False)
    assert result.ok
    report = json.loads((tmp_path / "dedup/_report/report.json").read_text())
    stats = result.stats
    assert set(report["docs_per_dump"]) == {"", "CC-MAIN-2023-50"}
    assert [r["dump"] for r in report["within_single_dump"]] == ["CC-MAIN-2023-50", NO_DUMP]
    assert sum(r["documents"] for r in report["within_single_dump"]) == sum(report["docs_per_dump"].values()) == stats["in"]
    assert report["cumulative"][-1]["documents"] == stats["in"]
    assert report["cumulative"][-1]["removed"] == sum(stats["dropped"].values())
    # The same file twice: every undumped document is the same page as a named one, which is kept
    # (unknown dumps come last under earliest_dump).
    kept = pq.read_table([str(p) for p in sorted((tmp_path / "dedup").glob("part-*.parquet"))], columns=["dump"]).column("dump").to_pylist()
    assert set(kept) == {"CC-MAIN-2023-50"} and stats["dropped"]["same_page"] > 0
    assert any(NO_DUMP in line for line in stage.report(result))


def test_repeated_edges_either_way_and_many_dumps_count_as_one_edge_list(tmp_path):
    """Dense random graphs over 40 dumps, every edge listed up to three times and either way round
    (an exact pair that was also verified comes twice): both tables equal the counts of each
    restricted edge list on its own, however the report's forest passes see the repeats."""
    rng = np.random.default_rng(11)
    dump_names = [f"CC-MAIN-{2014 + k // 4}-{10 + k % 4 * 10}" for k in range(40)] + [""]
    codes = np.array([steps.dump_code(d) for d in dump_names])
    nodes = rng.choice(1 << 40, size=400, replace=False)
    node_dump = codes[rng.integers(0, len(codes), size=len(nodes))]
    a, b = rng.integers(0, len(nodes), size=(2, 900))
    a, b = a[a != b], b[a != b]
    pick = rng.integers(0, len(a), size=600)
    a, b = np.r_[a, b[pick]], np.r_[b, a[pick]]  # the same pairs again, the other way round
    edges = np.stack([nodes[a], nodes[b], node_dump[a], node_dump[b]], axis=1)
    docs_per_dump = {d: int(np.sum(node_dump == c)) + 5 for d, c in zip(dump_names, codes)}
    report = report_of(edges, docs_per_dump, tmp_path / "_work", tmp_path / "out", partitions=3)
    src, dst, src_dump, dst_dump = edges.T
    named = (src_dump > 0) & (dst_dump > 0)
    assert [r["dump"] for r in report["within_single_dump"]] == sorted(dump_names[:-1]) + [NO_DUMP]
    for row in report["within_single_dump"]:
        code = steps.dump_code("" if row["dump"] == NO_DUMP else row["dump"])
        alone = (src_dump == code) & (dst_dump == code)
        assert row["removed"] == _removed(src[alone], dst[alone]), row
    through = [r["removed"] for r in report["cumulative"]]
    for row in report["cumulative"]:
        code = steps.dump_code("" if row["through"] == NO_DUMP else row["through"])
        upto = named & (src_dump <= code) & (dst_dump <= code) if code else np.ones(len(src), bool)
        assert row["removed"] == _removed(src[upto], dst[upto]), row
    assert through == sorted(through) and through[-1] == len(np.unique(np.r_[src, dst])) - _components(src, dst) > 300
