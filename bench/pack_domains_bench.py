"""Benchmark: pack's per-domain counts after pass 1, the partitions reading every part's shuffle file
(crawlmill before 2026-12-07) against runs of 64 parts summed first (`pipeline/pack/domains.py`),
on the same pass-1 files, locally and on an S3 server (moto on loopback: every read a ranged GET).

Input: N parts' counts as pass 1 writes them (`write_part_domains`, the stage's partitions for N
parts), each part naming D domains drawn from a Zipf law over 50 x D domains (a few sites in every
part, a long tail), seed 0. Measured: the domains steps run one task after another in this process
(their summed task time, as on one core), the reads (`read_ranges` calls; a GET per range on S3)
and the ranges read; the summary (documents, tokens, bytes, top domains) must be identical.

Run the code before from a worktree of it (no `combine_run` there: the partitions read the parts):
    python bench/pack_domains_bench.py --parts 2000 --domains-per-part 2000
    python bench/pack_domains_bench.py --parts 500 --store s3
    PYTHONPATH=/tmp/base python bench/pack_domains_bench.py --parts 2000   # a worktree of the code before
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests.s3server; after PYTHONPATH (a worktree of the code before)
from harness import run_info  # noqa: E402

from crawlmill.pipeline.dedup import shuffle  # noqa: E402
from crawlmill.pipeline.pack import domains  # noqa: E402


def write_parts(work: str, parts: int, per_part: int, partitions: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    universe = 50 * per_part
    for part in range(parts):
        ranks = np.unique(np.minimum(rng.zipf(1.3, size=per_part * 2), universe))[:per_part]
        counts = {f"site{r}.example.org": [int(d), int(d) * 700, int(d) * 2900] for r, d in zip(ranks, rng.integers(1, 40, size=len(ranks)))}
        domains.write_part_domains(domains.as_path(work), part, counts, partitions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", type=int, default=2000)
    parser.add_argument("--domains-per-part", type=int, default=2000)
    parser.add_argument("--store", choices=["local", "s3"], default="local")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    partitions = domains.partitions_for(args.parts)
    runs = hasattr(domains, "combine_run")
    reads: list[int] = []
    real = shuffle.read_ranges

    def counted(path, ranges):  # noqa: ANN001, ANN202
        reads.append(len(ranges))
        return real(path, ranges)

    shuffle.read_ranges = counted
    with tempfile.TemporaryDirectory() as local:
        if args.store == "s3":
            from tests.s3server import moto_s3

            store = moto_s3("bench-domains")
        else:
            from contextlib import nullcontext

            store = nullcontext((None, {}))
        with store:
            work = "s3://bench-domains/work" if args.store == "s3" else local
            start = time.perf_counter()
            write_parts(work, args.parts, args.domains_per_part, partitions, args.seed)
            pass1_s = time.perf_counter() - start
            start = time.perf_counter()
            if runs:
                for run, files in enumerate(domains.run_files(domains.as_path(work), args.parts)):
                    domains.combine_run(run, files, work, partitions)
            runs_s = time.perf_counter() - start
            run_reads = (len(reads), sum(reads))
            markers = [domains.merge_partition(r, work, 20) for r in range(partitions)]
            steps_s = time.perf_counter() - start
            summary = domains.finish_domains(domains.as_path(local), domains.as_path(work), markers, 20)
    result = {
        "code": "runs of parts" if runs else "partitions read the parts",
        "store": args.store, "parts": args.parts, "partitions": partitions, "domains": summary["domains"],
        "pass1_write_s": round(pass1_s, 2), "runs_s": round(runs_s, 2), "domains_steps_s": round(steps_s, 2),
        "read_calls": len(reads), "ranges_read": sum(reads), "of_them_by_runs": run_reads,
        "summary": {k: summary[k] for k in ("documents", "tokens", "bytes")} | {"top": [r["domain"] for r in summary["top"]]},
        "run": run_info(),
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['code']} ({args.store}): {args.parts:,} parts, {partitions} partitions, {summary['domains']:,} domains: "
              f"domains steps {result['domains_steps_s']} s, {len(reads):,} reads of {sum(reads):,} ranges; summary {json.dumps(result['summary'])[:120]}")


if __name__ == "__main__":
    main()
