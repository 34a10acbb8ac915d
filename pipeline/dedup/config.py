"""Dedup stage config: MinHash LSH shape, shuffle partitions, and which document of a cluster is kept.

The run config's `dedup:` section and `crawlmill dedup`'s options (`--bands`/`--rows` set
`minhash.bands`/`minhash.rows`, `--index` sets `index`, the INPUT folders set `inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEEP_RULES = ("earliest_dump", "latest_dump", "longest")
# A typical web page's shingle set (~380 distinct word 5-grams x 4 bytes, verify.verify_set): the
# unit of a verify chunk's byte budget. A 1,000,000-character text (ingest's max_text_chars) has a
# set of ~0.7 MB.
VERIFY_SET_BYTES = 3 << 9
# The most partitions the default gives (past 655M documents): a shuffle between partitions costs
# two reads per (sending task, receiving task) pair, 2 x (partitions / partitions_per_task)^2 a
# step. At 16,384 (4 partitions a task by default) that is 3.4 x 10^7 reads a step, and a task's
# share at 10^10 documents ~610k documents (~300 MB of bucket rows) a partition; 262,144 (the cap
# before 2026-12-07, a partition a task) made it ~10^11 reads a step, more than the work.
MAX_DEFAULT_PARTITIONS = 1 << 14
# The most tasks a step between partitions has by default: past it, a task takes a block of
# consecutive partitions (partitions_per_task), whose bytes it reads from each sender at once.
MAX_DEFAULT_PARTITION_TASKS = 1 << 12
# Blocks need the senders' names (5-digit partition numbers) in partition order, which holds below
# 100,000 partitions: past it, a partition a task.
MAX_BLOCK_PARTITIONS = 99_999


@dataclass(frozen=True)
class MinHashConfig:
    bands: int = 14
    rows: int = 8  # rows per band; 14 x 8 finds pairs of Jaccard >= ~0.8
    seed: int = 1

    def __post_init__(self) -> None:
        if self.bands < 1 or self.rows < 1:
            raise ValueError(f"minhash bands {self.bands} and rows {self.rows} must be at least 1")

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows

    def candidate_probability(self, jaccard: float) -> float:
        return 1.0 - (1.0 - jaccard**self.rows) ** self.bands


@dataclass
class DedupConfig:
    # Finished stage output folders (e.g. filter's) of every dump, deduplicated together.
    inputs: list[str] = field(default_factory=list, metadata={"path": True})
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    # Shuffle partitions: every reduce-side task holds 1/partitions of the bucket rows, candidate
    # pairs and edges. None: one per 40,000 documents, which keeps a task's memory flat as the corpus
    # grows (~18 MB of bucket rows, at most ~120 MB of shingle sets; docs/dedup.md has the arithmetic),
    # up to MAX_DEFAULT_PARTITIONS.
    partitions: int | None = None
    documents_per_partition: int = 40_000
    # Consecutive partitions a task of a step between partitions runs: it reads each sender's bytes
    # for all of them at once (two reads a sender, not two a partition) and sends one file a step
    # for all of them, so a step costs partitions^2 / partitions_per_task^2 reader-sender pairs
    # (on an object store, GETs); the bytes are spooled on local disk and the partitions processed
    # one at a time, so the memory stays a partition's. Fewer tasks, though: keep partitions /
    # partitions_per_task at or above the cluster's cores. None: as many as keep the tasks at
    # MAX_DEFAULT_PARTITION_TASKS (1 up to 4,096 partitions, 4 at the default's 16,384). It changes
    # no output, only `_work/`'s files: recorded, so a resume with another value is refused.
    partitions_per_task: int | None = None
    # Which document of a cluster is kept: earliest_dump (its first publication; ties: a WARC
    # extraction before WET text, then the longest text, then the smallest id), latest_dump (ties
    # likewise) or longest (ties: earliest dump, WARC before WET, id). Documents with the same id (one
    # capture: its WARC and WET copies) are always one cluster; the others are removed as same_page.
    keep: str = "earliest_dump"
    # Dedup against the kept documents of the earlier runs recorded in this index folder, then add
    # this run's (incremental dedup of a new dump: index.py).
    index: str | None = field(default=None, metadata={"path": True})
    # Candidate pairs are kept when their exact Jaccard similarity of shingles reaches this.
    jaccard_threshold: float = 0.8
    # Candidate pairs (each with its first document's shingle set) sent to verification per file and
    # checked per read: bounds the verify tasks however duplicate-dense the corpus is. A chunk also
    # closes when its shingle sets reach the bytes of this many typical pages' sets (x
    # VERIFY_SET_BYTES: 24 MiB by default), however long its documents (verify_chunk_budget).
    verify_chunk_pairs: int = 16_384
    max_rounds: int = 200  # connected-components rounds before giving up (never reached in practice)

    def __post_init__(self) -> None:
        if self.keep not in KEEP_RULES:
            raise ValueError(f"keep {self.keep!r}: choose one of {', '.join(KEEP_RULES)}")
        if not 0 < self.jaccard_threshold <= 1:
            raise ValueError("jaccard_threshold must be in (0, 1]")
        if self.verify_chunk_pairs < 1:
            raise ValueError("verify_chunk_pairs must be at least 1")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError("partitions must be at least 1")
        if self.partitions_per_task is not None and self.partitions_per_task < 1:
            raise ValueError("partitions_per_task must be at least 1")
        if (self.partitions or 0) > MAX_BLOCK_PARTITIONS and (self.partitions_per_task or 1) > 1:
            raise ValueError(f"partitions_per_task needs at most {MAX_BLOCK_PARTITIONS:,} partitions (a block's file takes its first task's place in name order)")
        if self.documents_per_partition < 1 or self.max_rounds < 1:
            raise ValueError("documents_per_partition and max_rounds must be at least 1")

    def verify_chunk_budget(self) -> tuple[int, int]:
        """(pairs, bytes of their shingle sets) at which a verify chunk closes: the pairs, or the
        bytes of as many typical sets, whichever comes first. A chunk of long documents (licences,
        legal text: often the duplicated ones) holds fewer pairs, never more bytes."""
        return self.verify_chunk_pairs, self.verify_chunk_pairs * VERIFY_SET_BYTES

    def partitions_for(self, documents: int) -> int:
        if self.partitions:
            return self.partitions
        return max(2, min(MAX_DEFAULT_PARTITIONS, -(-documents // self.documents_per_partition)))

    def partitions_per_task_for(self, partitions: int) -> int:
        if partitions > MAX_BLOCK_PARTITIONS:
            return 1
        return self.partitions_per_task or -(-partitions // MAX_DEFAULT_PARTITION_TASKS)

    def blocks(self, partitions: int) -> list[tuple[int, int]]:
        """(first partition, count) of each task of a step between partitions."""
        size = self.partitions_per_task_for(partitions)
        return [(first, min(size, partitions - first)) for first in range(0, partitions, size)]

    def settings(self) -> dict:
        """What changes the output or `_work/` (not where it comes from)."""
        from dataclasses import asdict

        return {k: v for k, v in asdict(self).items() if k not in ("inputs", "index")}
