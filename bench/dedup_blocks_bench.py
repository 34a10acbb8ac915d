"""Benchmark: the receiving side of a dedup step between partitions, a task per partition (what every
such step did before 2026-12-07) against a task per block of R consecutive partitions
(`shuffle.receiving`, `dedup.partitions_per_task`), on the same shuffle files, locally and on an S3
server (moto on loopback: every read a ranged GET, every listing a LIST).

Input: P senders (as many as the partitions: a step between partitions), each sending the same
number of bucket rows (dedup's BUCKET_SCHEMA: band, two 64-bit keys, node, dump; random, seed 0)
spread over the P partitions. Measured: every partition received, one receiving task after another
in this process (their summed task time, as on one core); the reads (`read_ranges` ranges: a GET
each on S3), the listings of the step, the bytes copied to the local spool; a digest of every
partition's rows must be the same for every R.

    python bench/dedup_blocks_bench.py --partitions 128 --store s3 --blocks 1 4 16
    python bench/dedup_blocks_bench.py --partitions 512 --blocks 1 8 --json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests.s3server
from harness import run_info  # noqa: E402

from crawlmill.files import as_path  # noqa: E402
from crawlmill.pipeline.dedup import shuffle  # noqa: E402
from crawlmill.pipeline.dedup.steps import BUCKET_SCHEMA  # noqa: E402


def write_senders(step: str, partitions: int, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for sender in range(partitions):
        keys = rng.integers(0, 1 << 63, size=(rows, 2), dtype=np.int64).astype(np.uint64)
        table = pa.table({
            "band": rng.integers(0, 14, rows).astype(np.int16), "key": keys[:, 0], "key2": keys[:, 1],
            "node": rng.integers(0, 1 << 40, rows), "dump": rng.integers(0, 4, rows).astype(np.int32),
        }, schema=BUCKET_SCHEMA)  # fmt: skip
        shuffle.write_partitioned(as_path(step), f"p-{sender:05d}", table, (keys[:, 0] % np.uint64(partitions)).astype(np.int64), partitions)


def receive_all(step: str, partitions: int, block: int) -> tuple[float, str, int]:
    """(seconds, digest of every partition's rows in order, rows) with a task per block of `block`."""
    digest, rows, start = hashlib.sha256(), 0, time.perf_counter()
    for first in range(0, partitions, block):
        count = min(block, partitions - first)
        with shuffle.receiving(first, count) if block > 1 else contextlib.nullcontext():
            for p in range(first, first + count):
                table = shuffle.read_partition(as_path(step), p, BUCKET_SCHEMA)
                rows += table.num_rows
                for column in table.columns:
                    digest.update(np.asarray(column.combine_chunks()).tobytes())
    return time.perf_counter() - start, digest.hexdigest(), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=128, help="partitions, and senders (default 128)")
    parser.add_argument("--rows-per-sender", type=int, default=20_000, help="bucket rows each sender sends (default 20000)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 4, 16], help="partitions a receiving task (default 1 4 16)")
    parser.add_argument("--store", choices=["local", "s3"], default="local")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reads, listings, spooled = [], [], []
    real_read, real_list = shuffle.read_ranges, shuffle.list_file_sizes

    def counted_read(path, ranges):  # noqa: ANN001, ANN202
        data = real_read(path, ranges)
        if "crawlmill-receive-" in str(path):
            return data  # the local spool
        reads.append(len(ranges))
        return data

    def counted_list(folder, pattern="*"):  # noqa: ANN001, ANN202
        listings.append(1)
        return real_list(folder, pattern)

    shuffle.read_ranges, shuffle.list_file_sizes = counted_read, counted_list
    real_write = Path.write_bytes

    def counted_spool(self, data):  # noqa: ANN001, ANN202
        if "crawlmill-receive-" in str(self):
            spooled.append(len(data))
        return real_write(self, data)

    Path.write_bytes = counted_spool
    results = []
    with tempfile.TemporaryDirectory(prefix="dedup-blocks-") as tmp, contextlib.ExitStack() as stack:
        if args.store == "s3":
            from tests.s3server import moto_s3

            stack.enter_context(moto_s3("blocks"))
            step = "s3://blocks/work/buckets"
        else:
            step = str(Path(tmp) / "buckets")
        start = time.perf_counter()
        write_senders(step, args.partitions, args.rows_per_sender, args.seed)
        write_s = time.perf_counter() - start
        for block in args.blocks:
            reads.clear(), listings.clear(), spooled.clear()
            seconds, digest, rows = receive_all(step, args.partitions, block)
            results.append({"partitions_per_task": block, "tasks": -(-args.partitions // block), "seconds": round(seconds, 2),
                            "reads": sum(reads), "listings": len(listings), "spooled_mb": round(sum(spooled) / 1e6, 1), "rows": rows, "digest": digest[:16]})  # fmt: skip
    same = len({r["digest"] for r in results}) == 1
    out = {"bench": "dedup_blocks", **run_info(), "store": args.store, "partitions": args.partitions, "senders": args.partitions,
           "rows_per_sender": args.rows_per_sender, "write_s": round(write_s, 2), "identical_rows": same, "results": results}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.partitions} senders x {args.partitions} partitions, {args.rows_per_sender} rows a sender, {args.store} (written in {write_s:.1f} s)")
        for r in results:
            print(f"  {r['partitions_per_task']:>3} a task ({r['tasks']} tasks): {r['seconds']:7.2f} s, {r['reads']:>7} reads, {r['listings']:>4} listings, {r['spooled_mb']} MB spooled")
        print(f"  every partition's rows identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
