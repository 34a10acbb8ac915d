"""The distributed steps of dedup, each a function run as one Ray task per run of input parts or
per partition (a run: `part_group_size` consecutive parts, one part until there are 8 per partition).

1. `map_parts` (per run of input parts): normalised-text hash (exact dedup, 128 bits), a hash of the
   document's `id` (the same page: WARC and WET of one capture share it, 128 bits) and MinHash band
   keys of every document, shuffled by key into bucket partitions; node attributes shuffled by node.
   A row without an id or text (a foreign part's null) gets no key: it is removed as `no_id` /
   `no_text` straight away, a removal row of its part's run as step 5 writes them.
2. `reduce_buckets` (per bucket partition; a task takes a block of consecutive partitions once there
   are more than 4,096, or as `partitions_per_task` says: `partition_block`): documents sharing an exact hash, an id or a band key
   become candidate pairs as a star (the first member in (exact hash, node) order to every other),
   never all pairs. Exact-hash and id pairs are duplicates as they stand (no verification).
3. `shingle_parts`, `verify_send`, `verify_check` (verify.py): the exact Jaccard of every candidate pair, from
   the shingle sets of the documents in candidate pairs only (a second read of their parts); pairs
   below the threshold are dropped (LSH lets ~5% of pairs at J=0.5 through) and the rest become
   edges, shuffled by node.
4. `cc_round` (per node partition, repeated): min-label propagation; each node's label becomes the
   smallest label among itself and its neighbours, until a round changes nothing.
5. `cluster_map` / `cluster_reduce`: members grouped by component; the keep rule picks one
   representative; every other member becomes a removal row, shuffled back to its input part's
   run; `split_removed` (per run) writes each part's removal rows apart for the output step.

A node is `input part index << 32 | row`. Every task reads only its own parts or partition.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import xxhash

from crawlmill.files import AnyPath, as_path, parquet_file, read_table

from .config import DedupConfig
from .minhash import band_keys, signatures
from .shingles import TEXT_FORMAT, normalize, shingle_hashes
from .shuffle import block_io, node_partition, read_partition, write_partitioned, write_table

BUCKETS, NODES, CANDIDATES, EDGE_NODES = "buckets", "nodes", "candidates", "edge_nodes"
SHINGLES, VERIFY, EDGES, CLUSTERS, REMOVED = "shingles", "verify", "edges", "clusters", "removed"
REMOVED_PARTS = "removed_parts"
PART_ROWS = "part_rows"
# The format of what the steps write into `_work/` (the stage's fingerprint records it): bump it
# whenever map's or a shuffle's output changes, so that a `_work/` written by an older version is
# never resumed (the runner refuses the mismatch; --overwrite recomputes it): a resumed one mixes
# both, its reduce reading rows map no longer writes or missing new ones. 2: the id band (ID_BAND
# rows); a `_work/` without them resumed without any same_page pair. 3: verify chunks also close at
# a byte budget (verify_send); a verify_send killed under 2 and run again under 3 would leave some of
# its 2-cut chunk files beside the 3-cut ones, and its pairs would be checked twice. 4: one shuffle
# file per sending task (shuffle.py), not a Parquet file per (sender, partition): a receiver of 4
# would not see 3's files. 5: shingle sets for verification as 32-bit hashes (verify.py), not 64.
# 6: a task of a step between partitions takes a block of them (partition_block): its marker holds
# each partition's result (5's one partition's), and it sends one file a step for the block, whose
# partitions hold several IPC streams back to back.
WORK_FORMAT = 6
EXACT_BAND = -1
# Documents with the same `id` are the same capture (ingest derives it from the page's response
# record, so its WARC extraction and its WET text share it): duplicates whatever their text.
ID_BAND = -2
SAME_PAGE, EXACT_DUPLICATE, NEAR_DUPLICATE = "same_page", "exact_duplicate", "near_duplicate"
BUCKET_SCHEMA = pa.schema([("band", pa.int16()), ("key", pa.uint64()), ("key2", pa.uint64()), ("node", pa.int64()), ("dump", pa.int32())])
# `indexed`: a document kept by an earlier run (the --index); it is never removed. `wet`: its
# source_format is "wet" (the keep rule prefers a page's WARC extraction to its WET text).
NODE_SCHEMA = pa.schema([("node", pa.int64()), ("id", pa.string()), ("dump", pa.int32()), ("length", pa.int64()), ("exact_hi", pa.uint64()), ("exact_lo", pa.uint64()), ("indexed", pa.bool_()), ("wet", pa.bool_())])
EDGE_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("src_dump", pa.int32()), ("dst_dump", pa.int32())])
NODE_LIST_SCHEMA = pa.schema([("node", pa.int64())])
SHINGLE_SCHEMA = pa.schema([("node", pa.int64()), ("shingles", pa.list_(pa.uint32()))])
SHINGLE_BYTES = 4  # one 32-bit hash per distinct shingle (verify.verify_set)
VERIFY_SCHEMA = pa.schema([*EDGE_SCHEMA, ("src_shingles", pa.list_(pa.uint32()))])
LABEL_SCHEMA = pa.schema([("node", pa.int64()), ("label", pa.int64())])
CLUSTER_SCHEMA = pa.schema([("cluster", pa.int64()), *NODE_SCHEMA])
# A cluster is named by the id of the document it keeps.
REMOVED_SCHEMA = pa.schema([("node", pa.int64()), ("cluster", pa.string()), ("kept_id", pa.string()), ("kept_dump", pa.int32()), ("reason", pa.string())])
_DUMP = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$")
BATCH = 512


def partition_block(config: DedupConfig, fn: Callable[..., dict[str, Any]], first: int, count: int, before: tuple, after: tuple) -> dict[str, Any]:
    """`fn(config, *before, p, *after)` for each partition p of first..first+count-1 in turn, its
    shuffles those of one block (shuffle.block_io: each sender's bytes for the whole block read at
    once, and one file a step sent for the block): a task of a step between partitions. Each
    partition's result by its number. A block of one partition does what a task per partition
    always did: it reads and sends apart (its senders, e.g. verify's chunks, keep a file each)."""
    with block_io(first, count) if count > 1 else contextlib.nullcontext():
        return {"partitions": {str(p): fn(config, *before, p, *after) for p in range(first, first + count)}}


def dump_code(dump: str | None) -> int:
    """CC-MAIN-YYYY-WW as YYYYWW (sorts in crawl order); 0 for anything else."""
    match = _DUMP.match(dump or "")
    return int(match.group(1)) * 100 + int(match.group(2)) if match else 0


def dump_name(code: int) -> str | None:
    return f"CC-MAIN-{code // 100:04d}-{code % 100:02d}" if code else None


def id_bucket_rows(ids: list[str | None], nodes: np.ndarray, codes: np.ndarray) -> pa.Table:
    """ID_BAND bucket rows: the 128-bit xxh3 of each document's id, split like the exact band's."""
    has = np.array([i is not None for i in ids], dtype=bool)
    digests = [xxhash.xxh3_128_intdigest(i.encode("utf-8")) for i in ids if i is not None]
    return pa.table({
        "band": np.full(int(has.sum()), ID_BAND, np.int16),
        "key": np.array([h & ((1 << 64) - 1) for h in digests], dtype=np.uint64),
        "key2": np.array([h >> 64 for h in digests], dtype=np.uint64),
        "node": np.asarray(nodes, np.int64)[has],
        "dump": np.asarray(codes, np.int32)[has],
    }, schema=BUCKET_SCHEMA)  # fmt: skip


def part_group_size(parts: int, partitions: int) -> int:
    """Input parts per map / shingles task, and per receiver of the shuffles that go back by input
    part (the removal rows, the documents to shingle): 4 to 8 groups per partition, so that a
    shuffle between groups and partitions costs at most 8 x partitions^2 ranged reads, however many parts
    (10^6 WET files at 4,096 partitions: 61 parts a task). One part per task while there are fewer
    than 8 parts per partition (the default partitions give a ~40k-document part its own task)."""
    return max(1, parts // (4 * partitions))


def part_group(nodes: np.ndarray, group_size: int) -> np.ndarray:
    return ((nodes >> np.int64(32)) // np.int64(group_size)).astype(np.int64)


def groups(items: list, group_size: int) -> list[list]:
    """Consecutive runs of `group_size` items (the last may be shorter)."""
    return [items[i : i + group_size] for i in range(0, len(items), group_size)]


def _part_rows(config: DedupConfig, index: int, path: str, text_format: int) -> dict[str, Any]:
    """One input part's bucket rows (exact, MinHash and id bands), node rows, rows without an id or
    text (node, no_id | no_text), documents and documents per dump."""
    bucket_tables, id_tables, node_tables, dumps = [], [], [], {}
    incomplete: list[tuple[int, str]] = []
    row = 0
    source = parquet_file(path)
    columns = ["id", "text", "dump", "lang"] + (["source_format"] if "source_format" in source.schema_arrow.names else [])
    for batch in source.iter_batches(batch_size=BATCH, columns=columns):
        ids, texts, dump_names, langs = (batch.column(c).to_pylist() for c in ("id", "text", "dump", "lang"))
        wet = np.array([f == "wet" for f in batch.column("source_format").to_pylist()] if "source_format" in columns else np.zeros(len(ids), bool), dtype=bool)
        nodes = (np.int64(index) << np.int64(32)) + np.arange(row, row + len(ids), dtype=np.int64)
        row += len(ids)
        codes = np.array([dump_code(d) for d in dump_names], dtype=np.int32)
        for d in dump_names:
            dumps[d or ""] = dumps.get(d or "", 0) + 1
        # A row without an id or text (a foreign part's null) is in no band: no document's duplicate
        # nor a cluster's representative. It is removed as `no_id` / `no_text` (map_parts).
        whole = np.array([i is not None and t is not None for i, t in zip(ids, texts)], dtype=bool)
        incomplete += [(int(n), "no_id" if i is None else "no_text") for n, i, w in zip(nodes, ids, whole) if not w]
        texts = [t if w else "" for t, w in zip(texts, whole)]
        normalized = [normalize(t, text_format) for t in texts]
        exact = [xxhash.xxh3_128_intdigest(t) for t in normalized]
        exact_hi = np.array([h >> 64 for h in exact], dtype=np.uint64)
        exact_lo = np.array([h & ((1 << 64) - 1) for h in exact], dtype=np.uint64)
        node_tables.append(pa.table({"node": nodes, "id": ids, "dump": codes, "length": [len(t) for t in texts], "exact_hi": exact_hi, "exact_lo": exact_lo, "indexed": np.zeros(len(ids), bool), "wet": wet}, schema=NODE_SCHEMA))
        hashes = [shingle_hashes(t, lang, normalized=True, text_format=text_format) for t, lang in zip(normalized, langs)]
        has = np.array([len(h) > 0 for h in hashes], dtype=bool)  # a row without text has no shingles
        keys = band_keys(signatures([h for h in hashes if len(h)], config.minhash), config.minhash)
        bands = config.minhash.bands
        band_nodes, band_codes = np.repeat(nodes[has], bands), np.repeat(codes[has], bands)
        bucket_tables.append(pa.table({
            "band": np.concatenate([np.full(int(whole.sum()), EXACT_BAND, np.int16), np.tile(np.arange(bands, dtype=np.int16), int(has.sum()))]),
            "key": np.concatenate([exact_lo[whole], keys.reshape(-1)]),
            "key2": np.concatenate([exact_hi[whole], np.repeat(exact_lo[has], bands)]),
            "node": np.concatenate([nodes[whole], band_nodes]),
            "dump": np.concatenate([codes[whole], band_codes]),
        }, schema=BUCKET_SCHEMA))  # fmt: skip
        id_tables.append(id_bucket_rows([i if w else None for i, w in zip(ids, whole)], nodes, codes))
    return {
        "buckets": pa.concat_tables(bucket_tables) if bucket_tables else BUCKET_SCHEMA.empty_table(),
        "ids": pa.concat_tables(id_tables) if id_tables else BUCKET_SCHEMA.empty_table(),
        "nodes": pa.concat_tables(node_tables) if node_tables else NODE_SCHEMA.empty_table(),
        "incomplete": incomplete, "documents": row, "dumps": dumps,
    }  # fmt: skip


def map_parts(config: DedupConfig, work: str, task: str, parts: list[tuple[int, str]], partitions: int, group_size: int, part_groups: int, keep_copy: bool = False, text_format: int = TEXT_FORMAT) -> dict[str, Any]:
    """Map (step 1) of a run of input parts (index, path): their rows in one shuffle per step; the
    rows without an id or text to their part's group (of `part_groups` groups of `group_size`)."""
    work_dir = as_path(work)
    buckets, nodes, incomplete, dumps, documents = [], [], [], {}, 0
    for index, path in parts:
        rows = _part_rows(config, index, path, text_format)
        buckets += [rows["buckets"], rows["ids"]]
        nodes.append(rows["nodes"])
        incomplete += rows["incomplete"]
        documents += rows["documents"]
        for dump, n in rows["dumps"].items():
            dumps[dump] = dumps.get(dump, 0) + n
        if keep_copy:  # the rows an --index keeps for later runs (index.py; it derives the id rows from the nodes')
            write_table(work_dir / PART_ROWS / f"part-{index:05d}-buckets.parquet", rows["buckets"])
            write_table(work_dir / PART_ROWS / f"part-{index:05d}-nodes.parquet", rows["nodes"])
        del rows
    shuffle_rows(work_dir, task, pa.concat_tables(buckets), pa.concat_tables(nodes), partitions)
    if incomplete:  # removals as the clusters' are: the output step drops them, an --index keeps none of them
        node = np.array([n for n, _ in incomplete], np.int64)
        gone = pa.table({"node": node, "cluster": [None] * len(incomplete), "kept_id": [None] * len(incomplete),
                         "kept_dump": [0] * len(incomplete), "reason": [r for _, r in incomplete]}, schema=REMOVED_SCHEMA)  # fmt: skip
        write_partitioned(work_dir / REMOVED, f"map-{task}", gone, part_group(node, group_size), part_groups)
    return {"documents": documents, "dumps": dict(sorted(dumps.items()))}


def shuffle_rows(work_dir: AnyPath, task: str, buckets: pa.Table, nodes: pa.Table, partitions: int) -> None:
    """Bucket rows to their key's partition, node rows to their node's."""
    key_partition = (buckets.column("key").to_numpy() % np.uint64(partitions)).astype(np.int64)
    write_partitioned(work_dir / BUCKETS, task, buckets, key_partition, partitions)
    write_partitioned(work_dir / NODES, task, nodes, node_partition(nodes.column("node").to_numpy(), partitions), partitions)


def reduce_buckets(config: DedupConfig, work: str, p: int, partitions: int, group_size: int, part_groups: int) -> dict[str, Any]:
    work_dir = as_path(work)
    table = read_partition(work_dir / BUCKETS, p, BUCKET_SCHEMA)
    band, key, key2, node, dump = (table.column(c).to_numpy() for c in ("band", "key", "key2", "node", "dump"))
    order = np.lexsort((node, key2, key, band))
    band, key, key2, node, dump = band[order], key[order], key2[order], node[order], dump[order]
    whole_hash = (band == EXACT_BAND) | (band == ID_BAND)  # key and key2 are one 128-bit hash
    # Groups: equal (band, key), and for the exact and id bands also equal key2 (the hash's other half).
    # In MinHash band rows key2 is the document's exact hash, so identical texts are not verified again.
    starts = np.ones(len(node), dtype=bool)
    starts[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1]) | ((key2[1:] != key2[:-1]) & whole_hash[1:])
    first = np.maximum.accumulate(np.where(starts, np.arange(len(node)), 0))
    member = ~starts  # every member but the group's first: one pair with that first
    exact = member & (band == EXACT_BAND)
    same_page = member & (band == ID_BAND)
    candidate = member & ~whole_hash & (key2 != key2[first])

    def pairs_of(mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return np.empty((0, 4), np.int64)
        u, v = node[first[mask]], node[mask]
        du, dv = dump[first[mask]], dump[mask]
        swap = u > v
        rows = np.stack([np.where(swap, v, u), np.where(swap, u, v), np.where(swap, dv, du), np.where(swap, du, dv)], axis=1)
        return np.unique(rows.astype(np.int64), axis=0)

    exact_pairs, same_page_pairs, candidate_pairs = pairs_of(exact), pairs_of(same_page), pairs_of(candidate)
    unverified = np.unique(np.concatenate([exact_pairs, same_page_pairs]), axis=0) if len(same_page_pairs) else exact_pairs
    write_edges(work_dir, f"exact-{p:05d}", _edge_table(unverified), partitions)  # J = 1 or one page: no verification
    candidates = _edge_table(candidate_pairs)
    write_partitioned(work_dir / CANDIDATES, f"from-{p:05d}", candidates, node_partition(candidate_pairs[:, 0], partitions), partitions)
    nodes = np.unique(candidate_pairs[:, :2])  # documents whose shingles the verification needs, by their part's group
    write_partitioned(work_dir / EDGE_NODES, f"from-{p:05d}", pa.table({"node": nodes}, schema=NODE_LIST_SCHEMA), part_group(nodes, group_size), part_groups)
    return {"bucket_rows": len(node), "exact_pairs": len(exact_pairs), "same_page_pairs": len(same_page_pairs), "candidates": len(candidate_pairs)}


def _edge_table(pairs: np.ndarray) -> pa.Table:
    return pa.table({"src": pairs[:, 0], "dst": pairs[:, 1], "src_dump": pairs[:, 2].astype(np.int32), "dst_dump": pairs[:, 3].astype(np.int32)}, schema=EDGE_SCHEMA)


def write_edges(work_dir: AnyPath, task: str, pairs: pa.Table, partitions: int) -> None:
    """Undirected edges, both directions, by source node (propagation reads a node's edges by source)."""
    flipped = pa.table({"src": pairs.column("dst"), "dst": pairs.column("src"), "src_dump": pairs.column("dst_dump"), "dst_dump": pairs.column("src_dump")}, schema=EDGE_SCHEMA)
    both = pa.concat_tables([pairs, flipped])
    write_partitioned(work_dir / EDGES, task, both, node_partition(both.column("src").to_numpy(), partitions), partitions)


def labels_path(work_dir: AnyPath, round_no: int, p: int) -> AnyPath:
    return work_dir / "cc" / f"labels-{round_no:04d}" / f"p-{p:05d}.parquet"


def cc_round(config: DedupConfig, work: str, round_no: int, p: int, partitions: int) -> dict[str, Any]:
    work_dir = as_path(work)
    edges = read_partition(work_dir / EDGES, p, EDGE_SCHEMA)
    src, dst = edges.column("src").to_numpy(), edges.column("dst").to_numpy()
    if round_no == 0:
        nodes = np.unique(src)
        labels, changed = nodes.copy(), len(nodes)
    else:
        previous = read_table(labels_path(work_dir, round_no - 1, p))
        nodes, labels = previous.column("node").to_numpy(), previous.column("label").to_numpy().copy()
        messages = read_partition(work_dir / "cc" / f"msgs-{round_no - 1:04d}", p, LABEL_SCHEMA)
        if messages.num_rows:
            at = np.searchsorted(nodes, messages.column("node").to_numpy())
            np.minimum.at(labels, at, messages.column("label").to_numpy())
        changed = int(np.sum(labels != previous.column("label").to_numpy()))
    write_table(labels_path(work_dir, round_no, p), pa.table({"node": nodes, "label": labels}, schema=LABEL_SCHEMA))
    sent = labels[np.searchsorted(nodes, src)] if len(src) else np.empty(0, np.int64)
    order = np.lexsort((sent, dst))
    dst_sorted, sent_sorted = dst[order], sent[order]
    keep = np.ones(len(dst_sorted), dtype=bool)
    keep[1:] = dst_sorted[1:] != dst_sorted[:-1]  # the smallest label per destination
    msgs = pa.table({"node": dst_sorted[keep], "label": sent_sorted[keep]}, schema=LABEL_SCHEMA)
    write_partitioned(work_dir / "cc" / f"msgs-{round_no:04d}", f"from-{p:05d}", msgs, node_partition(msgs.column("node").to_numpy(), partitions), partitions)
    return {"changed": changed, "nodes": len(nodes)}


def cluster_map(config: DedupConfig, work: str, final_round: int, p: int, partitions: int) -> dict[str, Any]:
    work_dir = as_path(work)
    path = labels_path(work_dir, final_round, p)
    labels = read_table(path) if path.exists() else LABEL_SCHEMA.empty_table()
    nodes = read_partition(work_dir / NODES, p, NODE_SCHEMA)
    node_ids, label_nodes = nodes.column("node").to_numpy(), labels.column("node").to_numpy()
    mask = np.isin(node_ids, label_nodes)
    members = nodes.filter(pa.array(mask))
    at = np.searchsorted(label_nodes, members.column("node").to_numpy())
    cluster = labels.column("label").to_numpy()[at]
    table = pa.table({"cluster": cluster, **{name: members.column(name) for name in NODE_SCHEMA.names}}, schema=CLUSTER_SCHEMA)
    write_partitioned(work_dir / CLUSTERS, f"from-{p:05d}", table, node_partition(cluster, partitions), partitions)
    return {"members": table.num_rows}


def _keep_order(config: DedupConfig, cluster: np.ndarray, dump: np.ndarray, length: np.ndarray, ids: np.ndarray, indexed: np.ndarray, wet: np.ndarray) -> np.ndarray:
    """Row order in which the first row of every cluster is the one to keep (np.lexsort: last key
    first). Documents of the --index come first: an earlier run already kept them. Within a dump a
    WARC extraction comes before WET text (a page's WARC and WET copies share their dump; WET
    keeps the page's navigation and boilerplate, so its length does not compare with the
    extraction's); with `longest`, length decides first."""
    dump_key = np.where(dump == 0, np.iinfo(np.int32).max, dump)  # unknown dumps last
    new = ~indexed
    if config.keep == "earliest_dump":
        return np.lexsort((ids, -length, wet, dump_key, new, cluster))
    if config.keep == "latest_dump":
        return np.lexsort((ids, -length, wet, -dump, new, cluster))
    return np.lexsort((ids, wet, dump_key, -length, new, cluster))


def cluster_reduce(config: DedupConfig, work: str, p: int, partitions: int, group_size: int, part_groups: int) -> dict[str, Any]:
    work_dir = as_path(work)
    table = read_partition(work_dir / CLUSTERS, p, CLUSTER_SCHEMA)
    cluster, dump, length = (table.column(c).to_numpy() for c in ("cluster", "dump", "length"))
    ids = np.array(table.column("id").to_pylist(), dtype=object)
    indexed = table.column("indexed").to_numpy(zero_copy_only=False)
    wet = table.column("wet").fill_null(False).to_numpy(zero_copy_only=False)  # null: node rows written before the column
    order = _keep_order(config, cluster, dump, length, ids, indexed, wet)
    cluster = cluster[order]
    first = np.ones(len(cluster), dtype=bool)
    first[1:] = cluster[1:] != cluster[:-1]
    rep = np.maximum.accumulate(np.where(first, np.arange(len(cluster)), 0))
    nodes = table.column("node").to_numpy()[order]
    ids, dump = ids[order], dump[order]
    hi, lo = table.column("exact_hi").to_numpy()[order], table.column("exact_lo").to_numpy()[order]
    removed = ~first & ~indexed[order]  # an earlier run's kept document stays, even if two meet now
    exact = (hi == hi[rep]) & (lo == lo[rep])
    # The kept document is the same capture (its WARC or WET copy), whatever the text.
    same_page = np.array([a is not None and a == b for a, b in zip(ids, ids[rep])], dtype=bool)
    reason = np.where(same_page, SAME_PAGE, np.where(exact, EXACT_DUPLICATE, NEAR_DUPLICATE))
    rows = pa.table({
        "node": nodes[removed],
        "cluster": ids[rep][removed].tolist(),
        "kept_id": ids[rep][removed].tolist(),
        "kept_dump": dump[rep][removed],
        "reason": reason[removed].tolist(),
    }, schema=REMOVED_SCHEMA)  # fmt: skip
    write_partitioned(work_dir / REMOVED, f"from-{p:05d}", rows, part_group(nodes[removed], group_size), part_groups)
    sizes = np.diff(np.flatnonzero(np.r_[first, True]))
    return {"clusters": int(first.sum()), "removed": int(removed.sum()), "largest_cluster": int(sizes.max()) if len(sizes) else 0}


def removed_path(work_dir: AnyPath, part: int) -> AnyPath:
    return work_dir / REMOVED_PARTS / f"part-{part:05d}.parquet"


def split_removed(config: DedupConfig, work: str, group: int, parts: list[int]) -> dict[str, Any]:
    """The removal rows a group of parts received, one file per part (every part of `parts`, those
    without removals too), sorted by node: the output and the index read their part's alone."""
    work_dir = as_path(work)
    table = read_partition(work_dir / REMOVED, group, REMOVED_SCHEMA)
    table = table.take(pa.array(np.argsort(table.column("node").to_numpy(), kind="stable")))
    node = table.column("node").to_numpy()
    part_of = node >> np.int64(32)
    starts, ends = np.searchsorted(part_of, parts), np.searchsorted(part_of, np.add(parts, 1))
    for part, start, end in zip(parts, starts, ends):
        write_table(removed_path(work_dir, part), table.slice(start, end - start))
    if int((ends - starts).sum()) != table.num_rows:
        raise ValueError(f"group {group}: removal rows of parts outside {parts[:1]}..{parts[-1:]} (part groups changed during the run?)")
    return {"removed": int(table.num_rows)}
