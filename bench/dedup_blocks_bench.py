"""Benchmark: the shuffle between two dedup steps between partitions, a task per partition (what
every such step did before 2026-12-07) against a task per block of R consecutive partitions
(`shuffle.block_io`, `dedup.partitions_per_task`): the sending step's tasks write, the receiving
step's tasks read every partition, locally and on an S3 server (moto on loopback: every read a
ranged GET, every file a PUT, every listing a LIST).

Input: P sending partitions, each sending the same rows whatever R: bucket rows (dedup's
BUCKET_SCHEMA: band, two 64-bit keys, node, dump; random, seeded by partition) spread over the P
receiving partitions. A block sends one file a step; a task per partition, one each. Measured, one
task after another in this process (their summed task time, as on one core): the send (files
written), the receive (reads: `read_ranges` ranges, a GET each on S3; listings; bytes spooled);
a digest of every partition's rows, in order, must be the same for every R.

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


def send_all(step: str, partitions: int, rows: int, seed: int, block: int) -> None:
    """Every sending partition's rows, a task per block of `block` (one file a block past 1)."""
    for first in range(0, partitions, block):
        count = min(block, partitions - first)
        with shuffle.block_io(first, count) if count > 1 else contextlib.nullcontext():
            for sender in range(first, first + count):
                rng = np.random.default_rng([seed, sender])
                keys = rng.integers(0, 1 << 63, size=(rows, 2), dtype=np.int64).astype(np.uint64)
                table = pa.table({
                    "band": rng.integers(0, 14, rows).astype(np.int16), "key": keys[:, 0], "key2": keys[:, 1],
                    "node": rng.integers(0, 1 << 40, rows), "dump": rng.integers(0, 4, rows).astype(np.int32),
                }, schema=BUCKET_SCHEMA)  # fmt: skip
                target = (keys[:, 0] % np.uint64(partitions)).astype(np.int64)
                shuffle.write_partitioned(as_path(step), f"from-{sender:05d}", table, target, partitions)


def receive_all(step: str, partitions: int, block: int) -> tuple[float, str, int]:
    """(seconds, digest of every partition's rows in order, rows) with a task per block of `block`."""
    digest, rows, start = hashlib.sha256(), 0, time.perf_counter()
    for first in range(0, partitions, block):
        count = min(block, partitions - first)
        with shuffle.block_io(first, count) if count > 1 else contextlib.nullcontext():
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
        if "crawlmill-block-" in str(path):
            return data  # the local spool
        reads.append(len(ranges))
        return data

    def counted_list(folder, pattern="*"):  # noqa: ANN001, ANN202
        listings.append(1)
        return real_list(folder, pattern)

    shuffle.read_ranges, shuffle.list_file_sizes = counted_read, counted_list
    real_write = Path.write_bytes

    def counted_spool(self, data):  # noqa: ANN001, ANN202
        if "crawlmill-block-" in str(self) and "/in-" in str(self):
            spooled.append(len(data))
        return real_write(self, data)

    Path.write_bytes = counted_spool
    results = []
    with tempfile.TemporaryDirectory(prefix="dedup-blocks-") as tmp, contextlib.ExitStack() as stack:
        if args.store == "s3":
            from tests.s3server import moto_s3

            stack.enter_context(moto_s3("blocks"))
            root = "s3://blocks/work"
        else:
            root = str(Path(tmp) / "work")
        for block in args.blocks:
            step = f"{root}/buckets-{block}"
            start = time.perf_counter()
            send_all(step, args.partitions, args.rows_per_sender, args.seed, block)
            send_s = time.perf_counter() - start
            files = len(shuffle.sender_files(as_path(step)))
            reads.clear(), listings.clear(), spooled.clear()
            seconds, digest, rows = receive_all(step, args.partitions, block)
            results.append({"partitions_per_task": block, "tasks": -(-args.partitions // block), "send_s": round(send_s, 2), "files": files,
                            "receive_s": round(seconds, 2), "reads": sum(reads), "listings": len(listings), "spooled_mb": round(sum(spooled) / 1e6, 1),
                            "rows": rows, "digest": digest[:16]})  # fmt: skip
    same = len({r["digest"] for r in results}) == 1
    out = {"bench": "dedup_blocks", **run_info(), "store": args.store, "partitions": args.partitions,
           "rows_per_sender": args.rows_per_sender, "identical_rows": same, "results": results}  # fmt: skip
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{args.partitions} sending x {args.partitions} receiving partitions, {args.rows_per_sender} rows a sending partition, {args.store}")
        for r in results:
            print(f"  {r['partitions_per_task']:>3} a task ({r['tasks']} tasks): send {r['send_s']:6.2f} s, {r['files']:>4} files;"
                  f" receive {r['receive_s']:6.2f} s, {r['reads']:>7} reads, {r['listings']:>4} listings, {r['spooled_mb']} MB spooled")
        print(f"  every partition's rows identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
