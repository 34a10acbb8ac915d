"""Dedup stage config: MinHash LSH shape, shuffle partitions, and which document of a cluster is kept."""

from __future__ import annotations

from dataclasses import dataclass, field

from .minhash import MinHashConfig

KEEP_RULES = ("earliest_dump", "latest_dump", "longest")


@dataclass
class DedupConfig:
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    # Shuffle partitions: every reduce-side task holds 1/partitions of the bucket rows, candidate
    # pairs and edges. None: one per 40,000 documents, which keeps a task's memory flat as the corpus
    # grows (~18 MB of bucket rows, at most ~120 MB of shingle sets; docs/dedup.md has the arithmetic).
    partitions: int | None = None
    documents_per_partition: int = 40_000
    # Which document of a cluster is kept: earliest_dump (its first publication; ties: the longest
    # text, then the smallest id), latest_dump (ties likewise) or longest (ties: earliest dump, id).
    keep: str = "earliest_dump"
    # Candidate pairs are kept when their exact Jaccard similarity of shingles reaches this.
    jaccard_threshold: float = 0.8
    # Candidate pairs (each with its first document's shingle set) sent to verification per file and
    # checked per read: bounds the verify tasks however duplicate-dense the corpus is.
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

    def partitions_for(self, documents: int) -> int:
        if self.partitions:
            return self.partitions
        return max(2, min(1 << 18, -(-documents // self.documents_per_partition)))
