"""Pack's per-domain counts, in memory bounded by a partition of the domains, never the corpus.

A crawl has tens of millions of registered domains, so no process holds them all:

1. each pass-1 task (encode.py) writes its part's counts split by a stable hash of the domain into
   one shuffle file, `_work/domains/part-NNNNN.shuffle` (domain, documents, tokens, bytes: UTF-8
   bytes of text; dedup/shuffle.py: a file per part, not one per (part, partition));
2. one Ray task per run of RUN_PARTS (64) consecutive parts (`combine_run`) reads its parts' files
   whole, one read each, sums them and writes the sums, split by the same hash, into one shuffle
   file, `_work/domain_runs/run-NNNNN.shuffle`;
3. one Ray task per partition (`merge_partition`) sums what the runs sent it, sorts by tokens (then
   name), writes `_work/domains/p-RRRRR.parquet` and returns its top domains and totals (its marker);
4. the driver (`finish_domains`) takes the top domains over all partitions (the global top N is
   among the partitions' top N: a domain lives in one partition only) for the manifest, and
   streams the partitions, one at a time, into `domains.parquet`: every domain once, in partition
   order, sorted by tokens within a partition (one partition, the default for up to 64 input
   parts, gives a fully sorted file).

Why the runs: a partition's task reads its rows from every sender, two ranged reads each (two
GETs on an object store). With the parts as senders that made parts x partitions = parts^2 / 64
pairs: 1.6 x 10^8 at 10^5 parts (one Common Crawl dump's WET files), hours of GETs. Runs make it
one read per part plus (parts / 64)^2 pairs: 2.4 x 10^6 at 10^5 parts (5 x 10^6 reads, 64x fewer).

`partitions_for(parts)` picks the count from the number of input parts (the count is fixed before
pass 1 writes its files; it is part of the run's `_tasks.json`, so a resumed run keeps it): one
partition per PARTS_PER_PARTITION parts, with no cap, so that a merge task's rows stay flat as the
corpus grows. A part (one WET file's documents, ~40k, after filtering and dedup fewer) names at most
tens of thousands of domains, so a run's or a merge's task sums at most 64 x that, ~1.6M rows
(~100 MB): the same at 10^7 documents as at 10^10. A fixed cap (256 before) made them grow with the
corpus: ~2.4M rows per task at 10^9 documents, ~24M (~1.5 GB) at 10^10. The manifest's counts and
top domains do not depend on the count (a domain lives in one partition; ties go by name);
domains.parquet's row order does (partition by partition). A folder packed from more than 16,384
parts by a version with that cap recorded 256: give `domain_partitions: 256` to resume it (or to
see it as done).
"""


from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, as_path, atomic_path, read_table

from ..dedup.shuffle import SUFFIX, read_partition, sender_files, sender_table, write_partitioned
from ..parts import PARQUET_OPTIONS, part_name

DOMAINS_FILE = "domains.parquet"
DOMAINS_DIR = "domains"
RUNS_DIR = "domain_runs"
SCHEMA = pa.schema([("domain", pa.string()), ("documents", pa.int64()), ("tokens", pa.int64()), ("bytes", pa.int64())])
COUNTS = ["documents", "tokens", "bytes"]
PARTS_PER_PARTITION = 64
RUN_PARTS = 64
# What `_work/` holds for the domains (the stage's fingerprint records it): 2, one shuffle file per
# part; 3, runs of parts summed before the partitions read them (`domain_runs/`). A folder of an
# earlier format left unfinished is refused, not resumed: its merge would not find what it reads.
WORK_FORMAT = 3


def partitions_for(parts: int) -> int:
    """One partition per 64 input parts (at least one): grows with the corpus, so that no merge task does."""
    return max(1, -(-parts // PARTS_PER_PARTITION))


def partition_of(domain: str, partitions: int) -> int:
    return zlib.crc32(domain.encode("utf-8")) % partitions  # stable across processes, unlike hash()


def write_part_domains(work: AnyPath, index: int, counts: dict[str, list[int]], partitions: int) -> None:
    """One input part's {domain: [documents, tokens, bytes]}, split by partition into its shuffle file."""
    rows = [(domain, documents, tokens, text_bytes) for domain, (documents, tokens, text_bytes) in sorted(counts.items())]
    partition = np.array([partition_of(row[0], partitions) for row in rows], np.int64)
    write_partitioned(work / DOMAINS_DIR, part_name(index), _table(rows), partition, partitions)


def _table(rows: list[tuple[str, int, int, int]]) -> pa.Table:
    columns = list(zip(*rows)) if rows else [(), (), (), ()]
    return pa.table([pa.array(values, field.type) for values, field in zip(columns, SCHEMA)], schema=SCHEMA)


def _write(path: AnyPath, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **PARQUET_OPTIONS)


def merged_path(work: AnyPath, partition: int) -> AnyPath:
    return work / DOMAINS_DIR / f"p-{partition:05d}.parquet"


def _summed(table: pa.Table, keys: list[str]) -> pa.Table:
    summed = table.group_by(keys).aggregate([(name, "sum") for name in COUNTS])
    # The aggregates come out as "<column>_sum".
    return summed.rename_columns([name.removesuffix("_sum") for name in summed.column_names])


def run_files(work: AnyPath, parts: int) -> list[list[tuple[str, int]]]:
    """The pass-1 files (path, size) of each run of RUN_PARTS consecutive parts, from one listing
    (a part that named no domain wrote none)."""
    runs: list[list[tuple[str, int]]] = [[] for _ in range(-(-parts // RUN_PARTS))]
    for path, size in sender_files(work / DOMAINS_DIR):
        index = int(path.name.removesuffix(SUFFIX).removeprefix("part-"))
        runs[index // RUN_PARTS].append((str(path), size))
    return runs


def combine_run(run: int, files: list[tuple[str, int]], work_dir: str, partitions: int) -> dict[str, Any]:
    """Ray task: one run's parts' counts (each file read whole), summed, into one shuffle file split
    as the parts split them."""
    read = [sender_table(as_path(path), size, SCHEMA, partitions) for path, size in files]
    table = pa.concat_tables([t for t, _ in read]) if read else SCHEMA.empty_table()
    partition = np.concatenate([p for _, p in read]) if read else np.zeros(0, np.int64)
    summed = _summed(table.append_column("partition", pa.array(partition)), ["domain", "partition"])
    summed = summed.sort_by([("partition", "ascending"), ("domain", "ascending")])  # rows in the same order however Arrow grouped them
    write_partitioned(as_path(work_dir) / RUNS_DIR, f"run-{run:05d}", summed.select(SCHEMA.names), summed.column("partition").to_numpy(), partitions)
    return {"run": run, "parts": len(files), "domains": summed.num_rows}


def merge_partition(partition: int, work_dir: str, top: int) -> dict[str, Any]:
    """Ray task: sum one partition's counts from every run; write it sorted; return its totals and top."""
    work = as_path(work_dir)
    summed = _summed(read_partition(work / RUNS_DIR, partition, SCHEMA), ["domain"]).select(SCHEMA.names)
    summed = summed.sort_by([("tokens", "descending"), ("domain", "ascending")])
    _write(merged_path(work, partition), summed)
    return {
        "partition": partition,
        "domains": summed.num_rows,
        **{name: int(pc.sum(summed[name]).as_py() or 0) for name in COUNTS},
        "top": summed.slice(0, top).to_pylist(),
    }


def finish_domains(output: AnyPath, work: AnyPath, markers: list[dict[str, Any]], top: int) -> dict[str, Any]:
    """Write domains.parquet from the merged partitions; return the top domains and totals."""
    with atomic_path(output / DOMAINS_FILE) as tmp, pq.ParquetWriter(tmp, SCHEMA, **PARQUET_OPTIONS) as writer:
        for marker in markers:
            writer.write_table(read_table(merged_path(work, marker["partition"]), schema=SCHEMA))
    candidates = [row for marker in markers for row in marker["top"]]
    candidates.sort(key=lambda row: (-row["tokens"], row["domain"]))
    return {
        "domains": sum(m["domains"] for m in markers),
        **{name: sum(m[name] for m in markers) for name in COUNTS},
        "top": candidates[:top],
    }
