"""Pack's per-domain counts, in memory bounded by a partition of the domains, never the corpus.

A crawl has tens of millions of registered domains, so no process holds them all:

1. each pass-1 task (encode.py) writes its part's counts split by a stable hash of the domain into
   one shuffle file, `_work/domains/part-NNNNN.shuffle` (domain, documents, tokens, bytes: UTF-8
   bytes of text; dedup/shuffle.py: a file per part, not one per (part, partition));
2. one Ray task per partition (`merge_partition`) sums what the parts sent it, sorts by tokens (then name),
   writes `_work/domains/p-RRRRR.parquet` and returns its top domains and totals (its marker);
3. the driver (`finish_domains`) takes the top domains over all partitions (the global top N is
   among the partitions' top N: a domain lives in one partition only) for the manifest, and
   streams the partitions, one at a time, into `domains.parquet`: every domain once, in partition
   order, sorted by tokens within a partition (one partition, the default for up to 64 input
   parts, gives a fully sorted file).

`partitions_for(parts)` picks the count from the number of input parts (the count is fixed before
pass 1 writes its files; it is part of the run's `_tasks.json`, so a resumed run keeps it): one
partition per PARTS_PER_PARTITION parts, with no cap, so that a merge task's rows stay flat as the
corpus grows. A part (one WET file's documents, ~40k, after filtering and dedup fewer) names at most
tens of thousands of domains, so a merge task sums at most 64 x that, ~1.6M rows (~100 MB): the
same at 10^7 documents as at 10^10. A fixed cap (256 before) made them grow with the corpus: ~2.4M
rows per task at 10^9 documents, ~24M (~1.5 GB) at 10^10. The manifest's counts and top domains do
not depend on the count (a domain lives in one partition; ties go by name); domains.parquet's row
order does (partition by partition). A folder packed from more than 16,384 parts by a version with
that cap recorded 256: give `domain_partitions: 256` to resume it (or to see it as done).
"""


from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, as_path, atomic_path, read_table

from ..dedup.shuffle import read_partition, write_partitioned
from ..parts import PARQUET_OPTIONS, part_name

DOMAINS_FILE = "domains.parquet"
DOMAINS_DIR = "domains"
SCHEMA = pa.schema([("domain", pa.string()), ("documents", pa.int64()), ("tokens", pa.int64()), ("bytes", pa.int64())])
COUNTS = ["documents", "tokens", "bytes"]
PARTS_PER_PARTITION = 64
# What `_work/domains/` holds (the stage's fingerprint records it): 2, one shuffle file per part. A
# folder of 1 (a Parquet file per part and partition) left unfinished is refused, not resumed: its
# merge would not see the files of the parts 1 finished.
WORK_FORMAT = 2


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


def merge_partition(partition: int, work_dir: str, top: int) -> dict[str, Any]:
    """Ray task: sum one partition's per-part counts; write it sorted; return its totals and top."""
    work = as_path(work_dir)
    table = read_partition(work / DOMAINS_DIR, partition, SCHEMA)
    summed = table.group_by("domain").aggregate([(name, "sum") for name in COUNTS])
    # The aggregates come out as "<column>_sum".
    summed = summed.rename_columns([name.removesuffix("_sum") for name in summed.column_names]).select(SCHEMA.names)
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
