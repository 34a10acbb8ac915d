"""Scoring for the dedup benchmark: what each tool removed and clustered, read back from its output,
and pairwise same-cluster precision / recall against the exact ground truth (bench/dedup_bench.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import combinations
from pathlib import Path


def crawlmill_predictions(output: Path) -> tuple[dict[str, str], set[str]]:
    """(removed id -> kept id, removed ids) from crawlmill's _duplicates/ folder."""
    import pyarrow.parquet as pq

    folder = next((output / name for name in ("_duplicates", "duplicates") if (output / name).exists()), None)  # "duplicates": before 2026-12-07
    rows = pq.read_table(folder, columns=["id", "kept_id"]).to_pylist() if folder is not None else []
    kept_as = {r["id"]: r["kept_id"] for r in rows}
    return kept_as, set(kept_as)


def datatrove_predictions(jobs: list[dict], tasks: int) -> tuple[dict[str, object], set[str]]:
    """(document id -> datatrove cluster, removed ids), from the cluster stage's files.

    MinhashDedupCluster writes per input task (file id = rank) `<rank:06d>.remove` (uint32 index,
    within that task's document stream, of every document to drop) and, with save_cluster_id,
    `<rank:06d>.clusters` ((index, cluster id) uint32 pairs for every document of a cluster with
    two or more members). The index is the document's position in the rank's ParquetReader stream,
    so re-reading that stream gives the ids; a document in no cluster is alone. The removed ids
    are checked against the documents the filter stage wrote to its exclusion writer."""
    import gzip

    import numpy as np
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.utils.logging import logger

    logger.disable("datatrove")  # re-reading the inputs: no per-file log lines

    cluster_of: dict[str, object] = {}
    removed: set[str] = set()
    for job in jobs:
        folder, job_removed = Path(job["work"]) / "remove_ids", set()
        for rank in range(tasks):
            reader = ParquetReader(job["folder"], glob_pattern=job["glob"], text_key="text", id_key="id")
            ids = [doc.id for doc in reader.run(rank=rank, world_size=tasks)]
            rm = folder / f"{rank:06d}.remove"
            if rm.exists():
                job_removed.update(ids[i] for i in np.fromfile(rm, dtype="<u4"))
            cl = folder / f"{rank:06d}.clusters"
            if cl.exists():
                for i, c in np.fromfile(cl, dtype="<u4").reshape(-1, 2):
                    cluster_of[ids[i]] = (job["name"], int(c))
        excluded: list[str] = []
        for path in (Path(job["work"]) / "removed").glob("*.jsonl.gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                excluded += [json.loads(line)["id"] for line in f]
        if len(excluded) != len(job_removed) or set(excluded) != job_removed:
            raise AssertionError(f"datatrove {job['name']}: {len(job_removed)} ids in .remove files, {len(excluded)} dropped by its filter")
        removed |= job_removed
    return cluster_of, removed


def same_cluster_pairs(cluster_of: dict[str, object]) -> set[tuple[str, str]]:
    members = defaultdict(list)
    for doc, cluster in cluster_of.items():
        members[cluster].append(doc)
    return {tuple(sorted(p)) for group in members.values() for p in combinations(group, 2)}


def pairwise_scores(truth_docs: list[dict], predicted_cluster: dict[str, object], removed: set[str]) -> dict:
    """Pairwise same-cluster precision/recall per language, as tests/pipeline/dedup/test_quality.py."""
    out = {}
    for lang in ("en", "zh"):
        docs = [d for d in truth_docs if d["lang"] == lang]
        predicted = {d["id"]: predicted_cluster.get(d["id"], d["id"]) for d in docs}
        true = {d["id"]: d["cluster"] for d in docs}
        pred_pairs, true_pairs = same_cluster_pairs(predicted), same_cluster_pairs(true)
        hit = len(pred_pairs & true_pairs)
        clusters = defaultdict(list)
        for d in docs:
            clusters[d["cluster"]].append(d["id"])
        out[lang] = {
            "docs": len(docs),
            "true_pairs": len(true_pairs),
            "predicted_pairs": len(pred_pairs),
            "precision": round(hit / len(pred_pairs), 4) if pred_pairs else None,
            "recall": round(hit / len(true_pairs), 4) if true_pairs else None,
            "removed": sum(d["id"] in removed for d in docs),
            "ideal_removed": len(docs) - len(clusters),  # one kept per true cluster
            "true_clusters_lost": sum(set(m) <= removed for m in clusters.values()),
        }
    return out


def by_kind(truth: dict[str, tuple[str, int]], cluster_of: dict[str, object], removed: set[str]) -> dict:
    """Per synthetic kind of the scale corpus: documents, how many were removed, and how many ended in
    the same cluster as the first document of their family (exact copies: should be all; rewrites,
    about half their sentences replaced: should be none; near copies, J 0.67-0.98: some)."""
    first = {family: doc_id for doc_id, (kind, family) in truth.items() if kind == "unique"}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for doc_id, (kind, family) in truth.items():
        c = counts[kind]
        c[0] += 1
        c[1] += doc_id in removed
        if kind != "unique" and family in first:
            c[2] += cluster_of.get(doc_id, doc_id) == cluster_of.get(first[family], first[family])
    return {
        k: {"docs": n, "removed": r, **({"merged_with_family_first": round(m / n, 4)} if k != "unique" else {})}
        for k, (n, r, m) in sorted(counts.items())
    }


# ----------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------


