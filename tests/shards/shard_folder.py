"""A small pack output folder made without Ray or a tokenizer, for tests that damage one: `.bin`/`.idx`
written by pack's own writer (pipeline/pack/shards.py, `index_bytes`), a docs.parquet and a
manifest.json with the keys and checksums pack writes (pipeline/pack/manifest.py); and what the
manifest fuzz tests share: every path into a JSON document, and JSON garbage to put there."""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from crawlmill.pipeline.pack.shards import index_bytes
from crawlmill.pipeline.pack.tokenizer import optimal_dtype
from crawlmill.shards.manifest import FORMAT, MANIFEST
from crawlmill.shards.mmidx import CODE_OF

VOCAB = 1000
EOD = 1


def _file(path: Path) -> dict:
    data = path.read_bytes()
    return {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_shard_folder(folder: Path, shards: int = 2, documents: int = 30, seed: int = 0, vocab: int = VOCAB, name: str = "shard") -> Path:
    """`shards` shards of `documents` documents each (token ids below `vocab`, every document ending
    with EOD), named `name`-NNNNN (pack's names for a remix group), their manifest; returns the folder."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(optimal_dtype(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for number in range(shards):
        prefix = f"{name}-{number:05d}"
        docs = [np.append(rng.integers(2, vocab, size=int(n)), EOD).astype(dtype) for n in rng.integers(5, 60, size=documents)]
        lengths = np.array([len(d) for d in docs], dtype=np.int32)
        (folder / f"{prefix}.bin").write_bytes(np.concatenate(docs).tobytes())
        (folder / f"{prefix}.idx").write_bytes(index_bytes(lengths, dtype))
        table = pa.table({"tokens": pa.array(lengths.astype(np.int64)), "bytes": pa.array((lengths * 4).astype(np.int64))})
        pq.write_table(table, folder / f"{prefix}.docs.parquet")
        tokens = int(lengths.sum())
        entries.append(
            {
                "prefix": prefix,
                "documents": documents,
                "tokens": tokens,
                "bytes": tokens * 4,
                "files": {kind: _file(folder / f"{prefix}.{kind}") for kind in ("bin", "idx", "docs.parquet")},
            }
        )
    prefixes, weights = [e["prefix"] for e in entries], [e["tokens"] for e in entries]
    manifest = {
        "format": FORMAT,
        "megatron": {"index": "MMIDIDX", "version": 1, "dtype": dtype.name, "dtype_code": CODE_OF[dtype.name], "level": "document", "eod_appended": True},
        "tokenizer": {"path": str(folder / "tokenizer.json"), "sha256": "0" * 64, "vocab_size": vocab, "padded_vocab_size": -(-vocab // 128) * 128,
                      "padded_from": "test", "eod_id": EOD, "eod_token": "<eod>"},
        "inputs": ["in/part-00000.parquet"],
        "shard_tokens": 10_000,
        "shards_count": shards,
        "documents": shards * documents,
        "tokens": sum(weights),
        "bytes": sum(e["bytes"] for e in entries),
        "counts": {"in": shards * documents, "packed": shards * documents, "dropped": {}},
        "by_dump": {}, "by_lang": {}, "domains": 0, "by_domain": {},
        "shards": entries,
        "blend": {"method": "tokens", "prefixes": prefixes, "weights": weights,
                  "data_path": [x for w, p in zip(weights, prefixes) for x in (str(w), p)], "mixture": None},
    }  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folder


JSON_GARBAGE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10)
    | st.sampled_from([-1, 0, 2**64, "../../etc/passwd", "/abs/prefix", "shard-00000", "", "\x00"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


def json_paths(value, prefix=()):
    """Every path into a JSON document (mapping keys and list positions)."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        yield (*prefix, key)
        yield from json_paths(item, (*prefix, key))


def damage_manifest(text: str, rng: random.Random, how: str, value) -> bytes:
    """A manifest's text damaged: `top` (the whole document `value`), `text` (bytes flipped, maybe
    cut), or one key or list item, picked by `rng`, set to `value` (`replace`) or removed (`delete`)."""
    if how == "top":
        return json.dumps(value).encode()
    if how == "text":
        data = bytearray(text.encode())
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data[: rng.choice([len(data), rng.randrange(len(data))])])
    manifest = json.loads(text)
    path = rng.choice(list(json_paths(manifest)))
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    if how == "replace":
        parent[path[-1]] = value
    else:
        del parent[path[-1]]  # a key, or a list item
    return json.dumps(manifest).encode()


def copy_folder(pristine: Path, parent: Path) -> Path:
    """A fresh copy per example (hypothesis reuses tmp_path across examples)."""
    folder = Path(tempfile.mkdtemp(dir=parent)) / "shards"
    folder.mkdir()
    for file in pristine.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    return folder
