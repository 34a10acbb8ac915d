"""Pack, pass 2: cut the tokenized parts into shards at deterministic boundaries and write them.

`plan_shards` walks the parts' document lengths in input order (one part in memory at a time) and
closes a shard before the document that would take it past `shard_tokens` (a document larger
than that gets a shard of its own; documents are never split). The boundaries therefore depend
only on the documents and the setting, never on how pass 1 was scheduled.

`write_shard` (a Ray task) copies its documents' token bytes from the parts' token files into
`shard-NNNNN.bin`, writes `shard-NNNNN.idx` (mmidx.index_bytes: the bytes IndexedDatasetBuilder
writes) and `shard-NNNNN.docs.parquet` (the source of every document: input part, row, id, url,
WARC file/offset/record id, tokens), each under a temporary name, then renames them and writes its
marker `_work/shards/_done/shard-NNNNN.json` (sizes, sha256, counts) last.

Run by `crawlmill pack` (stage.py) after pass 1 (encode.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..parts import PARQUET_OPTIONS, TMP_MARK, atomic_write_text
from .encode import DOCS_SCHEMA, add_counts, breakdown_json, docs_path, tokens_path
from .mmidx import index_bytes

SHARDS_WORK = "shards"
COPY_CHUNK = 8 << 20


def shard_name(number: int) -> str:
    return f"shard-{number:05d}"


@dataclass
class Piece:
    """Documents [doc_start, doc_end) of one tokenized part (pass-1 document numbering)."""

    part: int
    doc_start: int
    doc_end: int
    byte_start: int
    byte_end: int


@dataclass
class ShardPlan:
    number: int
    pieces: list[Piece] = field(default_factory=list)
    documents: int = 0
    tokens: int = 0


def part_lengths(work_dir: Path, part: int) -> np.ndarray:
    table = pq.read_table(docs_path(work_dir, part), columns=["tokens"])
    return table.column("tokens").to_numpy().astype(np.int64)


def plan_shards(work_dir: Path, parts: int, shard_tokens: int, itemsize: int) -> list[ShardPlan]:
    """Shard boundaries over parts 0..parts-1 in order (see the module docstring)."""
    shards: list[ShardPlan] = []
    current = ShardPlan(0)
    for part in range(parts):
        lengths = part_lengths(work_dir, part)
        ends = np.cumsum(lengths)  # token end of each document within the part
        start = 0
        while start < len(lengths):
            base = int(ends[start - 1]) if start else 0
            room = shard_tokens - current.tokens
            # Documents start.. that still fit: their cumulative length within `room`.
            fit = int(np.searchsorted(ends[start:] - base, room, side="right"))
            if fit == 0 and current.tokens == 0:
                fit = 1  # a document larger than a shard gets a shard of its own
            if fit:
                end = start + fit
                tokens = int(ends[end - 1]) - base
                current.pieces.append(Piece(part, start, end, base * itemsize, (base + tokens) * itemsize))
                current.documents += fit
                current.tokens += tokens
                start = end
            if start < len(lengths):  # the next document does not fit: close this shard
                shards.append(current)
                current = ShardPlan(len(shards))
    if current.documents:
        shards.append(current)
    return shards


def done_path(work_dir: Path, number: int) -> Path:
    return work_dir / SHARDS_WORK / "_done" / f"{shard_name(number)}.json"


def _tmp(path: Path) -> Path:
    return path.with_name(f"{TMP_MARK}{uuid.uuid4().hex}-{path.name}")


def _copy_range(source: Path, start: int, end: int, out: Any, digest: Any) -> None:
    with open(source, "rb") as f:
        f.seek(start)
        left = end - start
        while left:
            chunk = f.read(min(COPY_CHUNK, left))
            if not chunk:
                raise OSError(f"{source} ended {left} bytes early (its pass-1 output is damaged; delete the output and rerun)")
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)


def _docs_slice(work_dir: Path, piece: Piece) -> pa.Table:
    table = pq.read_table(docs_path(work_dir, piece.part), schema=DOCS_SCHEMA)
    return table.slice(piece.doc_start, piece.doc_end - piece.doc_start)


def _source(row: dict[str, Any]) -> dict[str, Any]:
    return {"input": row["input"], "row": row["row"], "id": row["id"]}


def write_shard(dtype_name: str, plan: ShardPlan, output_dir: str) -> dict[str, Any]:
    """Write one shard's .bin, .idx and .docs.parquet, then its marker; returns the marker.

    Streams piece by piece: memory holds one part's document table and the shard's lengths
    (4 bytes a document), never its tokens."""
    output = Path(output_dir)
    work = output / "_work"
    name = shard_name(plan.number)
    finals = {kind: output / f"{name}.{kind}" for kind in ("bin", "idx", "docs.parquet")}
    tmps = {kind: _tmp(path) for kind, path in finals.items()}
    digests = {kind: hashlib.sha256() for kind in finals}
    lengths, ranges, first, last = [], [], None, None
    breakdown: dict[str, dict[str, list[int]]] = {"dump": {}, "lang": {}}
    try:
        with open(tmps["bin"], "wb") as out, pq.ParquetWriter(tmps["docs.parquet"], DOCS_SCHEMA, **PARQUET_OPTIONS) as docs:
            for piece in plan.pieces:
                _copy_range(tokens_path(work, piece.part), piece.byte_start, piece.byte_end, out, digests["bin"])
                table = _docs_slice(work, piece)
                docs.write_table(table)
                piece_lengths = table.column("tokens").to_numpy()
                lengths.append(piece_lengths)
                for key, counts in breakdown.items():
                    add_counts(counts, table.column(key).to_pylist(), piece_lengths)
                rows = table.column("row")
                # Input rows the piece spans (a row dropped as empty_tokens inside a span is in no shard).
                ranges.append({"input": piece.part, "rows": [rows[0].as_py(), rows[-1].as_py() + 1]})
                first = first or _source(table.slice(0, 1).to_pylist()[0])
                last = _source(table.slice(len(table) - 1, 1).to_pylist()[0])
        all_lengths = np.concatenate(lengths)
        if len(all_lengths) != plan.documents or int(all_lengths.sum()) != plan.tokens:
            raise AssertionError(f"{name}: pass-1 outputs disagree with the shard plan")
        index = index_bytes(all_lengths, np.dtype(dtype_name))
        digests["idx"].update(index)
        tmps["idx"].write_bytes(index)
        with open(tmps["docs.parquet"], "rb") as f:
            while chunk := f.read(COPY_CHUNK):
                digests["docs.parquet"].update(chunk)
        # The .idx last: a shard whose .idx exists is complete (the marker below says so for resume).
        for kind in ("docs.parquet", "bin", "idx"):
            os.replace(tmps[kind], finals[kind])
    except BaseException:
        for path in tmps.values():
            path.unlink(missing_ok=True)
        raise
    marker = {
        "prefix": name,
        "documents": plan.documents,
        "tokens": plan.tokens,
        "files": {
            kind: {"name": finals[kind].name, "bytes": os.path.getsize(finals[kind]), "sha256": digests[kind].hexdigest()}
            for kind in ("bin", "idx", "docs.parquet")
        },
        "source": {"first": first, "last": last, "ranges": ranges},
        "by_dump": breakdown_json(breakdown["dump"]),
        "by_lang": breakdown_json(breakdown["lang"]),
    }
    atomic_write_text(done_path(work, plan.number), json.dumps(marker, indent=1, ensure_ascii=False))
    return marker


def read_shard_marker(work_dir: Path, number: int) -> dict[str, Any] | None:
    path = done_path(work_dir, number)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
