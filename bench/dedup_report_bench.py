"""Benchmark: the dedup report's reduce (documents removed within each dump and through each of the
first k dumps) on one partition's edges, crawlmill's two spanning-forest passes against a pass of
connected components per dump per table (scipy's `connected_components`, what crawlmill did until
2026-12-07 and what a per-dump report computes), on the same edges in the same process.

Input: a synthetic duplicate graph shaped like Common Crawl's: clusters of near-duplicate pages whose
sizes follow a Zipf law (most pairs, a few large clusters), each page in one of D dumps (the same
page recrawled across dumps), star edges to each cluster's first page plus random extra edges within
clusters, some edges repeated either way round (an exact pair that was also verified). Both methods
must give identical counts, or the run fails.

    python bench/dedup_report_bench.py --edges 1000000 --dumps 90
    python bench/dedup_report_bench.py --edges 200000 --dumps 10 --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_info  # noqa: E402

from crawlmill.pipeline.dedup import steps  # noqa: E402
from crawlmill.pipeline.dedup.config import DedupConfig  # noqa: E402
from crawlmill.pipeline.dedup.report import REPORT_EDGE_SCHEMA, REPORT_EDGES, _removed, report_reduce  # noqa: E402
from crawlmill.pipeline.dedup.shuffle import write_partitioned  # noqa: E402


def duplicate_graph(edges: int, dumps: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.zipf(2.0, size=edges) + 1, 5000)
    sizes = sizes[np.cumsum(sizes - 1) <= edges]  # a cluster of n pages: n - 1 star edges
    cluster = np.repeat(np.arange(len(sizes)), sizes)
    nodes = rng.choice(1 << 62, size=len(cluster), replace=False).astype(np.int64)
    codes = np.array([steps.dump_code(f"CC-MAIN-{2013 + k // 4}-{10 + 10 * (k % 4)}") for k in range(dumps)], np.int64)
    node_dump = codes[rng.integers(0, dumps, size=len(cluster))]
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    members = np.flatnonzero(np.r_[True, cluster[1:] == cluster[:-1]] & (np.arange(len(cluster)) != first[cluster]))
    src, dst = first[cluster[members]], members  # stars
    extra = rng.choice(members, size=len(members) // 5)  # a second edge within the cluster
    other = first[cluster[extra]] + rng.integers(0, sizes[cluster[extra]])
    keep = other != extra
    src, dst = np.r_[src, extra[keep]], np.r_[dst, other[keep]]
    again = rng.choice(len(src), size=len(src) // 10)  # repeated, the other way round
    src, dst = np.r_[src, dst[again]], np.r_[dst, src[again]]
    return nodes[src], nodes[dst], node_dump[src], node_dump[dst], codes


def per_dump_passes(src: np.ndarray, dst: np.ndarray, src_dump: np.ndarray, dst_dump: np.ndarray, codes: list[int]) -> dict:
    named = (src_dump > 0) & (dst_dump > 0)
    within, through = [], []
    for code in codes:
        alone = (src_dump == code) & (dst_dump == code)
        within.append(_removed(src[alone], dst[alone]))
        upto = named & (src_dump <= code) & (dst_dump <= code) if code else np.ones(len(src), dtype=bool)
        through.append(_removed(src[upto], dst[upto]))
    return {"within": within, "through": through}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", type=int, default=1_000_000, help="star edges of the synthetic graph (before extras and repeats)")
    parser.add_argument("--dumps", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each method (the best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    src, dst, src_dump, dst_dump, named_codes = duplicate_graph(args.edges, args.dumps, args.seed)
    order = src < dst  # report_map keeps each stored edge once, src < dst; repeats either way stay
    src, dst, src_dump, dst_dump = (np.where(order, x, y) for x, y in ((src, dst), (dst, src), (src_dump, dst_dump), (dst_dump, src_dump)))
    codes = sorted(int(c) for c in named_codes)
    result = {"edges": int(len(src)), "nodes": int(len(np.unique(np.r_[src, dst]))), "dumps": args.dumps}
    with tempfile.TemporaryDirectory() as work:
        table = pa.table({"cluster": np.zeros(len(src), np.int64), "src": src, "dst": dst, "src_dump": src_dump, "dst_dump": dst_dump}, schema=REPORT_EDGE_SCHEMA)
        write_partitioned(Path(work) / REPORT_EDGES, "bench", table, np.zeros(len(src), np.int64), 1)
        timings = {"per_dump_passes": [], "forest_passes": []}
        outputs = {}
        for _ in range(args.repeat):
            start = time.perf_counter()
            outputs["per_dump_passes"] = per_dump_passes(src, dst, src_dump, dst_dump, codes)
            timings["per_dump_passes"].append(time.perf_counter() - start)
            start = time.perf_counter()  # includes reading the partition's shuffle file: a fraction
            outputs["forest_passes"] = report_reduce(DedupConfig(), work, 0, codes)
            timings["forest_passes"].append(time.perf_counter() - start)
    if outputs["per_dump_passes"] != outputs["forest_passes"]:
        raise SystemExit(f"the methods disagree: {outputs}")
    result |= {name: round(min(times), 3) for name, times in timings.items()}
    result["speedup"] = round(result["per_dump_passes"] / result["forest_passes"], 1)
    result["removed_through_all"] = outputs["forest_passes"]["through"][-1]
    result["run"] = run_info()
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['edges']:,} edges over {result['nodes']:,} documents in {args.dumps} dumps: per-dump passes {result['per_dump_passes']} s, "
              f"forest passes {result['forest_passes']} s ({result['speedup']}x), identical counts ({result['removed_through_all']:,} removed through all)")


if __name__ == "__main__":
    main()
