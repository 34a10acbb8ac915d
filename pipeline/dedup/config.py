"""Dedup stage config: MinHash LSH shape, shuffle partitions, and which document of a cluster is kept."""

from __future__ import annotations

from dataclasses import dataclass, field

from .minhash import MinHashConfig

KEEP_RULES = ("earliest_dump", "latest_dump", "longest")


@dataclass
class DedupConfig:
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    # Shuffle partitions: every reduce task holds about (documents x (bands + 1) / partitions) bucket
    # rows of 27 bytes; None picks enough for ~64 MiB per task (docs/dedup.md has the arithmetic).
    partitions: int | None = None
    # Which document of a cluster is kept: earliest_dump (its first publication; ties: the longest
    # text, then the smallest id), latest_dump (ties likewise) or longest (ties: earliest dump, id).
    keep: str = "earliest_dump"
    # Candidate pairs are kept when their exact Jaccard similarity of shingles reaches this.
    jaccard_threshold: float = 0.8
    max_rounds: int = 200  # connected-components rounds before giving up (never reached in practice)

    def __post_init__(self) -> None:
        if self.keep not in KEEP_RULES:
            raise ValueError(f"keep {self.keep!r}: choose one of {', '.join(KEEP_RULES)}")
        if not 0 < self.jaccard_threshold <= 1:
            raise ValueError("jaccard_threshold must be in (0, 1]")
        if self.partitions is not None and self.partitions < 1:
            raise ValueError("partitions must be at least 1")

    def partitions_for(self, documents: int) -> int:
        if self.partitions:
            return self.partitions
        rows = documents * (self.minhash.bands + 1)
        return max(2, min(4096, -(-rows * 27 // (64 << 20))))
