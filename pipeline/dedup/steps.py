"""The distributed steps of dedup, each a function run as one Ray task per input part or partition.

1. `map_part` (per input part): normalised-text hash (exact dedup, 128 bits) and MinHash band keys
   of every document, shuffled by key into bucket partitions; node attributes shuffled by node.
2. `reduce_buckets` (per bucket partition): documents sharing an exact hash or a band key are
   linked by star edges (smallest node to every other), never all pairs; edges shuffled by node.
3. `cc_round` (per node partition, repeated): min-label propagation; each node's label becomes the
   smallest label among itself and its neighbours, until a round changes nothing.
4. `cluster_map` / `cluster_reduce`: members grouped by component; the keep rule picks one
   representative; every other member becomes a removal row, shuffled back to its input part.

A node is `input part index << 32 | row`. Every task reads only its own part or partition.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from .config import DedupConfig
from .minhash import band_keys, signatures
from .shingles import mix64, normalize, shingle_hashes
from .shuffle import node_partition, read_partition, write_partitioned, write_table

BUCKETS, NODES, EDGES, CLUSTERS, REMOVED = "buckets", "nodes", "edges", "clusters", "removed"
EXACT_BAND = -1
BUCKET_SCHEMA = pa.schema([("band", pa.int16()), ("key", pa.uint64()), ("key2", pa.uint64()), ("node", pa.int64()), ("dump", pa.int32())])
NODE_SCHEMA = pa.schema([("node", pa.int64()), ("id", pa.string()), ("dump", pa.int32()), ("length", pa.int64()), ("exact_hi", pa.uint64()), ("exact_lo", pa.uint64())])
EDGE_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64()), ("src_dump", pa.int32()), ("dst_dump", pa.int32())])
LABEL_SCHEMA = pa.schema([("node", pa.int64()), ("label", pa.int64())])
CLUSTER_SCHEMA = pa.schema([("cluster", pa.int64()), *NODE_SCHEMA])
# A cluster is named by the id of the document it keeps.
REMOVED_SCHEMA = pa.schema([("node", pa.int64()), ("cluster", pa.string()), ("kept_id", pa.string()), ("kept_dump", pa.int32()), ("reason", pa.string())])
_DUMP = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$")
BATCH = 512


def dump_code(dump: str | None) -> int:
    """CC-MAIN-YYYY-WW as YYYYWW (sorts in crawl order); 0 for anything else."""
    match = _DUMP.match(dump or "")
    return int(match.group(1)) * 100 + int(match.group(2)) if match else 0


def dump_name(code: int) -> str | None:
    return f"CC-MAIN-{code // 100:04d}-{code % 100:02d}" if code else None


def map_part(config: DedupConfig, work: str, index: int, path: str, partitions: int) -> dict[str, Any]:
    work_dir, task = Path(work), f"part-{index:05d}"
    bucket_tables, node_tables, dumps = [], [], {}
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH, columns=["id", "text", "dump", "lang"]):
        ids, texts, dump_names, langs = (batch.column(c).to_pylist() for c in ("id", "text", "dump", "lang"))
        nodes = (np.int64(index) << np.int64(32)) + np.arange(row, row + len(ids), dtype=np.int64)
        row += len(ids)
        codes = np.array([dump_code(d) for d in dump_names], dtype=np.int32)
        for d in dump_names:
            dumps[d or ""] = dumps.get(d or "", 0) + 1
        exact = [xxhash.xxh3_128_intdigest(normalize(t)) for t in texts]
        exact_hi = np.array([h >> 64 for h in exact], dtype=np.uint64)
        exact_lo = np.array([h & ((1 << 64) - 1) for h in exact], dtype=np.uint64)
        node_tables.append(pa.table({"node": nodes, "id": ids, "dump": codes, "length": [len(t) for t in texts], "exact_hi": exact_hi, "exact_lo": exact_lo}, schema=NODE_SCHEMA))
        hashes = [shingle_hashes(t, lang) for t, lang in zip(texts, langs)]
        has = np.array([len(h) > 0 for h in hashes])
        keys = band_keys(signatures([h for h in hashes if len(h)], config.minhash), config.minhash)
        bands = config.minhash.bands
        band_nodes, band_codes = np.repeat(nodes[has], bands), np.repeat(codes[has], bands)
        bucket_tables.append(pa.table({
            "band": np.concatenate([np.full(len(nodes), EXACT_BAND, np.int16), np.tile(np.arange(bands, dtype=np.int16), int(has.sum()))]),
            "key": np.concatenate([exact_lo, keys.reshape(-1)]),
            "key2": np.concatenate([exact_hi, np.zeros(len(band_nodes), np.uint64)]),
            "node": np.concatenate([nodes, band_nodes]),
            "dump": np.concatenate([codes, band_codes]),
        }, schema=BUCKET_SCHEMA))  # fmt: skip
    buckets = pa.concat_tables(bucket_tables) if bucket_tables else BUCKET_SCHEMA.empty_table()
    key_partition = (buckets.column("key").to_numpy() % np.uint64(partitions)).astype(np.int64)
    write_partitioned(work_dir / BUCKETS, task, buckets, key_partition, partitions)
    node_table = pa.concat_tables(node_tables) if node_tables else NODE_SCHEMA.empty_table()
    write_partitioned(work_dir / NODES, task, node_table, node_partition(node_table.column("node").to_numpy(), partitions), partitions)
    return {"documents": row, "dumps": dict(sorted(dumps.items()))}


def reduce_buckets(config: DedupConfig, work: str, p: int, partitions: int) -> dict[str, Any]:
    work_dir = Path(work)
    table = read_partition(work_dir / BUCKETS, p, BUCKET_SCHEMA)
    band, key, key2, node, dump = (table.column(c).to_numpy() for c in ("band", "key", "key2", "node", "dump"))
    order = np.lexsort((node, key2, key, band))
    band, key, key2, node, dump = band[order], key[order], key2[order], node[order], dump[order]
    starts = np.ones(len(node), dtype=bool)
    starts[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1]) | (key2[1:] != key2[:-1])
    first = np.maximum.accumulate(np.where(starts, np.arange(len(node)), 0))
    member = ~starts  # every member but the group's smallest node: one edge to that node
    src, dst = node[first[member]], node[member]
    src_dump, dst_dump = dump[first[member]], dump[member]
    pairs = np.unique(np.stack([src, dst, src_dump.astype(np.int64), dst_dump.astype(np.int64)], axis=1), axis=0) if len(src) else np.empty((0, 4), np.int64)
    both = np.concatenate([pairs, pairs[:, [1, 0, 3, 2]]])  # both directions: propagation reads edges by source
    edges = pa.table({"src": both[:, 0], "dst": both[:, 1], "src_dump": both[:, 2].astype(np.int32), "dst_dump": both[:, 3].astype(np.int32)}, schema=EDGE_SCHEMA)
    write_partitioned(work_dir / EDGES, f"from-{p:05d}", edges, node_partition(edges.column("src").to_numpy(), partitions), partitions)
    exact = int(np.sum(band[member] == EXACT_BAND))
    return {"bucket_rows": len(node), "edges": len(pairs), "exact_edges": exact}


def _labels_path(work_dir: Path, round_no: int, p: int) -> Path:
    return work_dir / "cc" / f"labels-{round_no:04d}" / f"p-{p:05d}.parquet"


def cc_round(config: DedupConfig, work: str, round_no: int, p: int, partitions: int) -> dict[str, Any]:
    work_dir = Path(work)
    edges = read_partition(work_dir / EDGES, p, EDGE_SCHEMA)
    src, dst = edges.column("src").to_numpy(), edges.column("dst").to_numpy()
    if round_no == 0:
        nodes = np.unique(src)
        labels, changed = nodes.copy(), len(nodes)
    else:
        previous = pq.read_table(_labels_path(work_dir, round_no - 1, p))
        nodes, labels = previous.column("node").to_numpy(), previous.column("label").to_numpy().copy()
        messages = read_partition(work_dir / "cc" / f"msgs-{round_no - 1:04d}", p, LABEL_SCHEMA)
        if messages.num_rows:
            at = np.searchsorted(nodes, messages.column("node").to_numpy())
            np.minimum.at(labels, at, messages.column("label").to_numpy())
        changed = int(np.sum(labels != previous.column("label").to_numpy()))
    write_table(_labels_path(work_dir, round_no, p), pa.table({"node": nodes, "label": labels}, schema=LABEL_SCHEMA))
    sent = labels[np.searchsorted(nodes, src)] if len(src) else np.empty(0, np.int64)
    order = np.lexsort((sent, dst))
    dst_sorted, sent_sorted = dst[order], sent[order]
    keep = np.ones(len(dst_sorted), dtype=bool)
    keep[1:] = dst_sorted[1:] != dst_sorted[:-1]  # the smallest label per destination
    msgs = pa.table({"node": dst_sorted[keep], "label": sent_sorted[keep]}, schema=LABEL_SCHEMA)
    write_partitioned(work_dir / "cc" / f"msgs-{round_no:04d}", f"from-{p:05d}", msgs, node_partition(msgs.column("node").to_numpy(), partitions), partitions)
    return {"changed": changed, "nodes": len(nodes)}


def cluster_map(config: DedupConfig, work: str, final_round: int, p: int, partitions: int) -> dict[str, Any]:
    work_dir = Path(work)
    path = _labels_path(work_dir, final_round, p)
    labels = pq.read_table(path) if path.exists() else LABEL_SCHEMA.empty_table()
    nodes = read_partition(work_dir / NODES, p, NODE_SCHEMA)
    node_ids, label_nodes = nodes.column("node").to_numpy(), labels.column("node").to_numpy()
    mask = np.isin(node_ids, label_nodes)
    members = nodes.filter(pa.array(mask))
    at = np.searchsorted(label_nodes, members.column("node").to_numpy())
    cluster = labels.column("label").to_numpy()[at]
    table = pa.table({"cluster": cluster, **{name: members.column(name) for name in NODE_SCHEMA.names}}, schema=CLUSTER_SCHEMA)
    write_partitioned(work_dir / CLUSTERS, f"from-{p:05d}", table, node_partition(cluster, partitions), partitions)
    return {"members": table.num_rows}


def _keep_order(config: DedupConfig, cluster: np.ndarray, dump: np.ndarray, length: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row order in which the first row of every cluster is the one to keep (np.lexsort: last key first)."""
    dump_key = np.where(dump == 0, np.iinfo(np.int32).max, dump)  # unknown dumps last
    if config.keep == "earliest_dump":
        return np.lexsort((ids, -length, dump_key, cluster))
    if config.keep == "latest_dump":
        return np.lexsort((ids, -length, -dump, cluster))
    return np.lexsort((ids, dump_key, -length, cluster))


def cluster_reduce(config: DedupConfig, work: str, p: int, partitions: int, input_parts: int) -> dict[str, Any]:
    work_dir = Path(work)
    table = read_partition(work_dir / CLUSTERS, p, CLUSTER_SCHEMA)
    cluster, dump, length = (table.column(c).to_numpy() for c in ("cluster", "dump", "length"))
    ids = np.array(table.column("id").to_pylist(), dtype=object)
    order = _keep_order(config, cluster, dump, length, ids)
    cluster = cluster[order]
    first = np.ones(len(cluster), dtype=bool)
    first[1:] = cluster[1:] != cluster[:-1]
    rep = np.maximum.accumulate(np.where(first, np.arange(len(cluster)), 0))
    nodes = table.column("node").to_numpy()[order]
    ids, dump = ids[order], dump[order]
    hi, lo = table.column("exact_hi").to_numpy()[order], table.column("exact_lo").to_numpy()[order]
    removed = ~first
    exact = (hi == hi[rep]) & (lo == lo[rep])
    rows = pa.table({
        "node": nodes[removed],
        "cluster": ids[rep][removed].tolist(),
        "kept_id": ids[rep][removed].tolist(),
        "kept_dump": dump[rep][removed],
        "reason": np.where(exact[removed], "exact_duplicate", "near_duplicate").tolist(),
    }, schema=REMOVED_SCHEMA)  # fmt: skip
    part_of = (nodes[removed] >> np.int64(32)).astype(np.int64)
    write_partitioned(work_dir / REMOVED, f"from-{p:05d}", rows, part_of, input_parts)
    sizes = np.diff(np.flatnonzero(np.r_[first, True]))
    return {"clusters": int(first.sum()), "removed": int(removed.sum()), "largest_cluster": int(sizes.max()) if len(sizes) else 0}
