"""Dedup report, Table-1 style: share of documents removed within each single dump, and when
deduplicating the first 1, 2, ..., N dumps together (_report/report.json and _report/report.png).

Removed documents of a set of dumps = documents in duplicate edges among them minus the number of
connected components those edges form (one document of each is kept). The edges are the run's
star edges restricted to the dumps in question, so every figure comes from one dedup run.

Two more distributed steps compute it, so that no process holds the run's edge list (billions of
edges for a few Common Crawl dumps): `report_map` gives each edge its component's label (the
connected-components step's final one) and shuffles it by label; `report_reduce` counts, per
partition, the removed documents of every set of dumps. A component of the restricted graph lies
inside one component of the whole graph, hence inside one partition: the partitions' counts add up.

Documents without a Common Crawl dump (a file with no warcinfo and no crawl-data path: dump null)
form one more row of both tables, NO_DUMP, after the named dumps: within it alone, and every
document of the run together. The tables add up to `docs_per_dump`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from crawlmill.files import AnyPath, as_path, atomic_path, atomic_write_text, read_table

from . import steps
from .config import DedupConfig
from .shuffle import node_partition, read_partition, write_partitioned

REPORT_DIR = "_report"
NO_DUMP = "(no dump)"  # documents whose dump is null (or not a CC-MAIN-YYYY-WW id): dump code 0
REPORT_EDGES = "report_edges"
REPORT_EDGE_SCHEMA = pa.schema([("cluster", pa.int64()), *steps.EDGE_SCHEMA])


def report_dumps(docs_per_dump: dict[str, int]) -> tuple[list[str], dict[str, int]]:
    """The report's rows in order (named dumps by date, then NO_DUMP if any) and their documents."""
    dumps = sorted(d for d in docs_per_dump if steps.dump_code(d))
    documents = {dump: docs_per_dump[dump] for dump in dumps}
    undumped = sum(n for d, n in docs_per_dump.items() if not steps.dump_code(d))
    if undumped:
        dumps.append(NO_DUMP)
        documents[NO_DUMP] = undumped
    return dumps, documents


def _removed(src: np.ndarray, dst: np.ndarray) -> int:
    """Removed documents of one edge list: its nodes minus its components (tests' reference)."""
    if not len(src):
        return 0
    nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = len(nodes)
    graph = coo_matrix((np.ones(len(src)), (inverse[: len(src)], inverse[len(src) :])), shape=(n, n))
    components, _ = connected_components(graph, directed=False)
    return n - components


def _forest_weights(src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The weights of a minimum spanning forest's edges (Kruskal's, scipy). Its edges of weight <= w
    span every component of the edges of weight <= w, so their count is that subgraph's nodes minus
    its components: the documents it removes, for every w from one pass."""
    if not len(src):
        return np.zeros(0, np.int64)
    nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    a, b = inverse[: len(src)], inverse[len(src) :]
    a, b = np.minimum(a, b), np.maximum(a, b)
    # one entry per pair: a sparse matrix sums repeated entries, and an edge listed twice would
    # weigh twice as much (a pair's weight depends only on its nodes: any copy will do)
    _, first = np.unique(a * len(nodes) + b, return_index=True)
    graph = coo_matrix((weight[first].astype(np.float64), (a[first], b[first])), shape=(len(nodes), len(nodes)))
    return minimum_spanning_tree(graph.tocsr()).tocoo().data.astype(np.int64)


def report_map(config: DedupConfig, work: str, final_round: int, p: int, partitions: int) -> dict[str, Any]:
    """The partition's edges, each once, with their component's label, shuffled by label."""
    work_dir = as_path(work)
    edges = read_partition(work_dir / steps.EDGES, p, steps.EDGE_SCHEMA)
    # Edges are stored both ways, by source node: src < dst keeps each once, and src's label is
    # in this partition's labels.
    edges = edges.filter(pa.array(edges.column("src").to_numpy() < edges.column("dst").to_numpy()))
    if not edges.num_rows:
        return {"edges": 0}
    labels = read_table(steps.labels_path(work_dir, final_round, p))
    label_nodes = labels.column("node").to_numpy()
    cluster = labels.column("label").to_numpy()[np.searchsorted(label_nodes, edges.column("src").to_numpy())]
    table = pa.table({"cluster": cluster, **{name: edges.column(name) for name in steps.EDGE_SCHEMA.names}}, schema=REPORT_EDGE_SCHEMA)
    write_partitioned(work_dir / REPORT_EDGES, f"from-{p:05d}", table, node_partition(cluster, partitions), partitions)
    return {"edges": table.num_rows}


def _rows_of(dump_codes: np.ndarray, codes: list[int]) -> np.ndarray:
    """Each dump code's row in `codes`, from 1; 0 for a code the report has no row for."""
    if not codes:
        return np.zeros(len(dump_codes), np.int64)
    order = np.argsort(np.asarray(codes, dtype=np.int64), kind="stable")
    ordered = np.asarray(codes, dtype=np.int64)[order]
    at = np.minimum(np.searchsorted(ordered, dump_codes), len(codes) - 1)
    return np.where(ordered[at] == dump_codes, order[at] + 1, 0)


def report_reduce(config: DedupConfig, work: str, p: int, codes: list[int]) -> dict[str, Any]:
    """Removed documents of the partition's components, within each dump of `codes` (the report's
    rows; 0 = NO_DUMP, last) and through each: the named dumps up to it, or every document at 0.
    Two spanning-forest passes over the partition's edges, however many dumps (a pass per dump
    per table before 2026-12-07: ~180 over the same edges with every Common Crawl dump)."""
    edges = read_partition(as_path(work) / REPORT_EDGES, p, REPORT_EDGE_SCHEMA)
    src, dst = edges.column("src").to_numpy(), edges.column("dst").to_numpy()
    # a dump's row, from 1 (0: a dump without a row; none, as every document's dump is a row, but
    # such an edge is better counted nowhere than somewhere wrong)
    src_row, dst_row = (_rows_of(edges.column(name).to_numpy(), codes) for name in ("src_dump", "dst_dump"))
    known = (src_row > 0) & (dst_row > 0) & (src != dst)
    rows = len(codes) + 1
    # Within a dump: components of same-dump edges never cross dumps, so one forest of them all,
    # counted by dump, is each dump's own forest.
    alone = known & (src_row == dst_row)
    within = np.bincount(_forest_weights(src[alone], dst[alone], src_row[alone]), minlength=rows)
    # Through dump k: the edges whose later end is dump k or earlier (NO_DUMP's row is last:
    # through it, every edge), so an edge weighs its later end's row.
    later = np.maximum(src_row, dst_row)
    through = np.cumsum(np.bincount(_forest_weights(src[known], dst[known], later[known]), minlength=rows))
    return {"within": within[1:].tolist(), "through": through[1:].tolist()}


def write_report(output: AnyPath, docs_per_dump: dict[str, int], summary: dict[str, Any], partitions: list[dict[str, Any]]) -> dict[str, Any]:
    """report.json and report.png from `report_reduce`'s results (one per partition)."""
    dumps, documents = report_dumps(docs_per_dump)
    single, cumulative = [], []
    total = 0
    for k, dump in enumerate(dumps):
        removed = sum(r["within"][k] for r in partitions)
        single.append({"dump": dump, "documents": documents[dump], "removed": removed, "share": round(removed / max(documents[dump], 1), 4)})
        total += documents[dump]
        removed_k = sum(r["through"][k] for r in partitions)
        cumulative.append({"dumps": k + 1, "through": dump, "documents": total, "removed": removed_k, "share": round(removed_k / max(total, 1), 4)})
    report = {**summary, "docs_per_dump": docs_per_dump, "within_single_dump": single, "cumulative": cumulative}
    folder = output / REPORT_DIR  # "_"-prefixed: Parquet readers of the output folder skip it
    atomic_write_text(folder / "report.json", json.dumps(report, indent=1))
    _plot(folder / "report.png", single, cumulative)
    return report


def _plot(path: AnyPath, single: list[dict], cumulative: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    x = np.arange(1, len(single) + 1)
    ax.bar(x - 0.2, [100 * s["share"] for s in single], width=0.4, label="within the dump alone")
    ax.bar(x + 0.2, [100 * c["share"] for c in cumulative], width=0.4, label="first k dumps together")
    ax.set_xticks(x, [f"{k}\n{s['dump'] if s['dump'] == NO_DUMP else s['dump'][8:]}" for k, s in zip(x, single)], fontsize=8)
    ax.set_xlabel("k (dump)")
    ax.set_ylabel("documents removed (%)")
    ax.set_title("Near-duplicate removal: per dump vs across dumps (DeepSeek LLM Table 1 style)")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
