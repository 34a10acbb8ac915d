"""Dedup's verification steps (steps.py's step 3): the exact Jaccard of every candidate pair.

`shingle_parts` (per group of input parts) shingles the documents that are in candidate pairs, shuffled by
node; `verify_send` (per node partition) sends each pair, with its first document's shingle set,
to its second document's partition in chunks of bounded size; `verify_check` (per node partition)
keeps the pairs at or above the threshold as edges for connected components. LSH lets ~5% of pairs
at J=0.5 through: this is where they are dropped. Run by dedup's stage (stage.py) as Ray tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from crawlmill.files import AnyPath, as_path, parquet_file

from .config import DedupConfig
from .shingles import TEXT_FORMAT, shingle_hashes
from .shuffle import node_partition, partition_tables, read_partition, write_partitioned
from .steps import (
    BATCH, CANDIDATES, EDGE_NODES, EDGE_SCHEMA, NODE_LIST_SCHEMA, SHINGLE_BYTES, SHINGLE_SCHEMA, SHINGLES, VERIFY,
    VERIFY_SCHEMA, write_edges,
)  # fmt: skip


def verify_set(text: str, lang: str | None, text_format: int = TEXT_FORMAT) -> np.ndarray:
    """The set a candidate pair's Jaccard is computed on: the high 32 bits of each distinct shingle
    hash, distinct and sorted (uint32). Half the bytes of the 64-bit hashes, in the shuffles that
    carry them (the largest at scale: a set per candidate pair) and in the verify tasks. Two of a
    page's ~380 shingles share 32 bits with odds of ~2 x 10^-5 (a 1,000,000-character page's
    ~175,000: a few, of 175,000), and a shared value moves J by one shingle in the union: no
    pair's verdict moves but one within a shingle of the threshold."""
    high = (shingle_hashes(text, lang, text_format=text_format) >> np.uint64(32)).astype(np.uint32)
    # sorted already (the 64-bit hashes are): only neighbours can be equal
    return high[np.concatenate([[True], high[1:] != high[:-1]])] if len(high) else high


def shingle_parts(config: DedupConfig, work: str, group: int, parts: list[tuple[int, str]], partitions: int, text_format: int = TEXT_FORMAT) -> dict[str, Any]:
    """Shingle hashes of the documents in candidate pairs of a group of input parts (index, path),
    shuffled by node."""
    work_dir = as_path(work)
    # A document proposed by several bucket partitions is listed once per partition: shingle it once.
    wanted_nodes = np.unique(read_partition(work_dir / EDGE_NODES, group, NODE_LIST_SCHEMA).column("node").to_numpy())
    nodes, hashes = [], []
    for index, path in parts:
        first = np.searchsorted(wanted_nodes, [np.int64(index) << np.int64(32), np.int64(index + 1) << np.int64(32)])
        wanted = wanted_nodes[first[0] : first[1]] & np.int64(0xFFFFFFFF)
        row = 0
        if not len(wanted):
            continue
        for batch in parquet_file(path).iter_batches(batch_size=BATCH, columns=["text", "lang"]):
            texts, langs = batch.column("text").to_pylist(), batch.column("lang").to_pylist()
            lo, hi = np.searchsorted(wanted, [row, row + len(texts)])
            for r in wanted[lo:hi]:
                nodes.append((index << 32) | int(r))
                hashes.append(verify_set(texts[r - row], langs[r - row], text_format))
            row += len(texts)
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in hashes])]).astype(np.int32)
    values = np.concatenate(hashes) if hashes else np.empty(0, np.uint32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint32()))
    table = pa.table({"node": pa.array(nodes, pa.int64()), "shingles": lists}, schema=SHINGLE_SCHEMA)
    write_partitioned(work_dir / SHINGLES, f"group-{group:05d}", table, node_partition(table.column("node").to_numpy(), partitions), partitions)
    return {"documents": len(nodes)}


class ShingleSets:
    """Shingle sets of many documents as one Arrow list array: numpy views, never Python ints."""

    def __init__(self, lists: pa.ChunkedArray | pa.ListArray) -> None:
        lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
        self.lists = lists
        self.offsets = lists.offsets.to_numpy()
        self.values = lists.values.to_numpy()

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]


def _shingles_of(work_dir: AnyPath, p: int) -> tuple[np.ndarray, ShingleSets]:
    table = read_partition(work_dir / SHINGLES, p, SHINGLE_SCHEMA)
    order = np.argsort(table.column("node").to_numpy(), kind="stable")
    table = table.take(pa.array(order))
    return table.column("node").to_numpy(), ShingleSets(table.column("shingles"))


def verify_chunks(set_sizes: np.ndarray, max_pairs: int, max_bytes: int) -> list[tuple[int, int]]:
    """[start, end) row ranges cutting pairs, in their order, into chunks of at most `max_pairs` pairs
    whose shingle sets (`set_sizes`: bytes of each pair's set) take at most `max_bytes` together; a
    pair whose set alone is larger is a chunk of its own. A function of the sizes alone: the same
    pairs give the same chunks, however the tasks run."""
    ends = np.concatenate([[0], np.cumsum(np.asarray(set_sizes, np.int64))])
    chunks, start, n = [], 0, len(set_sizes)
    while start < n:
        # the last end whose bytes since start stay within max_bytes (at least one pair)
        fits = int(np.searchsorted(ends, ends[start] + max_bytes, side="right")) - 1
        end = max(start + 1, min(start + max_pairs, fits, n))
        chunks.append((start, end))
        start = end
    return chunks


def verify_send(config: DedupConfig, work: str, p: int, partitions: int) -> dict[str, Any]:
    """Candidate pairs whose first document is in partition p travel, with its shingles, to the second's.

    Pairs go out in chunks (config.verify_chunk_budget): a pair carries its source's shingle set, so a
    task holding all its pairs at once would grow with the corpus's duplicate density, and a chunk of
    a fixed number of pairs would grow with the length of its documents (the set of a
    1,000,000-character text is ~0.7 MB): a chunk closes at a pair count or a byte budget. Chunks are
    cut in the pairs' order (the candidate files' order, rows as written: deterministic) and the
    receivers read them in that order (sender, chunk): no result depends on the cut."""
    work_dir = as_path(work)
    pairs = read_partition(work_dir / CANDIDATES, p, EDGE_SCHEMA)
    nodes, sets = _shingles_of(work_dir, p)
    at_all = np.searchsorted(nodes, pairs.column("src").to_numpy())
    set_bytes = np.diff(sets.offsets)[at_all].astype(np.int64) * SHINGLE_BYTES if pairs.num_rows else np.empty(0, np.int64)
    max_pairs, max_bytes = config.verify_chunk_budget()
    chunks = verify_chunks(set_bytes, max_pairs, max_bytes)
    for chunk, (start, end) in enumerate(chunks):
        some = pairs.slice(start, end - start)
        table = pa.table({
            **{name: some.column(name) for name in EDGE_SCHEMA.names},
            "src_shingles": sets.lists.take(pa.array(at_all[start:end])),
        }, schema=VERIFY_SCHEMA)  # fmt: skip
        destination = node_partition(some.column("dst").to_numpy(), partitions)
        write_partitioned(work_dir / VERIFY, f"from-{p:05d}-{chunk:05d}", table, destination, partitions)
        del table
    return {"pairs": pairs.num_rows, "chunks": len(chunks), "largest_chunk_bytes": max((int(set_bytes[a:b].sum()) for a, b in chunks), default=0)}


def verify_check(config: DedupConfig, work: str, p: int, partitions: int) -> dict[str, Any]:
    """Exact Jaccard of every candidate pair whose second document is in partition p; the pairs at or
    above the threshold become edges (both directions, by source) for connected components.
    Reads one sender's chunk at a time."""
    work_dir = as_path(work)
    nodes, sets = _shingles_of(work_dir, p)
    verified, checked = [], 0
    for table in partition_tables(work_dir / VERIFY, p, VERIFY_SCHEMA):
        at = np.searchsorted(nodes, table.column("dst").to_numpy())
        sources = ShingleSets(table.column("src_shingles"))
        keep = np.zeros(table.num_rows, dtype=bool)
        for i, j in enumerate(at):
            a, b = sources[i], sets[j]
            shared = np.intersect1d(a, b, assume_unique=True).size
            union = len(a) + len(b) - shared
            keep[i] = union > 0 and shared >= config.jaccard_threshold * union
        checked += table.num_rows
        verified.append(table.select(EDGE_SCHEMA.names).filter(pa.array(keep)))
        del table, sources
    edges = pa.concat_tables(verified) if verified else EDGE_SCHEMA.empty_table()
    write_edges(work_dir, f"verified-{p:05d}", edges, partitions)
    return {"checked": checked, "verified": edges.num_rows}
