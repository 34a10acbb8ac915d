"""Dedup quality against exact ground truth: a multi-dump WET corpus built from the real English and
Chinese text in ../shared/data (crawlmill.corpora.dedup_corpus: republished, edited, rewritten and
mirrored pages, true clusters from exact Jaccard >= 0.8 of the shingles), ingested and deduplicated
end to end."""

from collections import defaultdict
from itertools import combinations

import pyarrow.parquet as pq
import pytest

from crawlmill.corpora.dedup_corpus import build_corpus
from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage

DUMPS = ["CC-MAIN-2023-40", "CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-22"]


def same_cluster_pairs(cluster_of: dict[str, object]) -> set[tuple[str, str]]:
    members = defaultdict(list)
    for doc, cluster in cluster_of.items():
        members[cluster].append(doc)
    return {tuple(sorted(p)) for group in members.values() for p in combinations(group, 2)}


@pytest.fixture(scope="module")
def result(ray_local, shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("dedup-quality")
    truth = build_corpus(root / "corpus", shared_data / "text", DUMPS, docs_per_dump=400, seed=11)
    assert run_stage(IngestStage(IngestConfig(inputs=[str(root / "corpus/crawl-data")])), root / "ingest", progress=False).ok
    assert run_stage(DedupStage(DedupConfig(inputs=[str(root / "ingest")], partitions=3)), root / "dedup", progress=False).ok
    return truth.docs.to_pylist(), pq.read_table(root / "dedup/_duplicates").to_pylist(), root


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_precision_and_recall_against_exact_jaccard_ground_truth(result, lang):
    docs, duplicates, _ = result
    docs = [d for d in docs if d["lang"] == lang]
    kept_as = {d["id"]: d["kept_id"] for d in duplicates}
    predicted = {d["id"]: kept_as.get(d["id"], d["id"]) for d in docs}
    true = {d["id"]: d["cluster"] for d in docs}
    pred_pairs, true_pairs = same_cluster_pairs(predicted), same_cluster_pairs(true)
    assert len(true_pairs) > 200
    precision = len(pred_pairs & true_pairs) / len(pred_pairs)
    recall = len(pred_pairs & true_pairs) / len(true_pairs)
    print(f"{lang}: precision {precision:.4f} recall {recall:.4f} ({len(true_pairs)} true pairs)")
    assert precision >= 0.98 and recall >= 0.95
    # No true cluster is removed entirely: every one keeps at least one document.
    removed = set(kept_as)
    clusters = defaultdict(list)
    for d in docs:
        clusters[d["cluster"]].append(d["id"])
    assert all(not set(members) <= removed for members in clusters.values())


def test_report_matches_the_run(result):
    import json

    _, duplicates, root = result
    report = json.loads((root / "dedup/_report/report.json").read_text())
    assert [r["dump"] for r in report["within_single_dump"]] == DUMPS
    assert report["cumulative"][-1]["removed"] == len(duplicates)
    shares = [r["share"] for r in report["cumulative"]]
    assert shares == sorted(shares)  # more dumps together, more removed (Table 1's shape)
