"""Dedup report, Table-1 style: share of documents removed within each single dump, and when
deduplicating the first 1, 2, ..., N dumps together (_report/report.json and _report/report.png).

Removed documents of a set of dumps = documents in duplicate edges among them minus the number of
connected components those edges form (one document of each is kept). The edges are the run's
star edges restricted to the dumps in question, so every figure comes from one dedup run. This
step reads the edge list (duplicates only, not all documents) into one process.

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
from scipy.sparse.csgraph import connected_components

from crawlmill.files import AnyPath, atomic_path, atomic_write_text, list_files, read_table

from . import steps

REPORT_DIR = "_report"
NO_DUMP = "(no dump)"  # documents whose dump is null (or not a CC-MAIN-YYYY-WW id): dump code 0


def _removed(src: np.ndarray, dst: np.ndarray) -> int:
    if not len(src):
        return 0
    nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    n = len(nodes)
    graph = coo_matrix((np.ones(len(src)), (inverse[: len(src)], inverse[len(src) :])), shape=(n, n))
    components, _ = connected_components(graph, directed=False)
    return n - components


def _edges(work: AnyPath, partitions: int) -> tuple[np.ndarray, ...]:
    files = list_files(work / steps.EDGES, "p-*/*.parquet")
    if not files:
        return tuple(np.empty(0, np.int64) for _ in range(4))
    table = pa.concat_tables([read_table(f, schema=steps.EDGE_SCHEMA) for f in files])
    src, dst = table.column("src").to_numpy(), table.column("dst").to_numpy()
    one_way = src < dst
    return src[one_way], dst[one_way], table.column("src_dump").to_numpy()[one_way], table.column("dst_dump").to_numpy()[one_way]


def write_report(output: AnyPath, work: AnyPath, partitions: int, docs_per_dump: dict[str, int], summary: dict[str, Any]) -> dict[str, Any]:
    src, dst, src_dump, dst_dump = _edges(work, partitions)
    dumps = sorted(d for d in docs_per_dump if steps.dump_code(d))
    documents = {dump: docs_per_dump[dump] for dump in dumps}
    undumped = sum(n for d, n in docs_per_dump.items() if not steps.dump_code(d))
    if undumped:
        dumps.append(NO_DUMP)
        documents[NO_DUMP] = undumped
    single, cumulative = [], []
    total = 0
    for k, dump in enumerate(dumps):
        code = steps.dump_code(dump)  # 0 for NO_DUMP
        within = (src_dump == code) & (dst_dump == code)
        removed = _removed(src[within], dst[within])
        single.append({"dump": dump, "documents": documents[dump], "removed": removed, "share": round(removed / max(documents[dump], 1), 4)})
        total += documents[dump]
        if code:
            upto = (src_dump <= code) & (dst_dump <= code) & (src_dump > 0) & (dst_dump > 0)
        else:  # the last row: every document of the run
            upto = np.ones(len(src), dtype=bool)
        removed_k = _removed(src[upto], dst[upto])
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
