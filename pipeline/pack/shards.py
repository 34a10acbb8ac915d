"""Pack, pass 2: cut the tokenized parts into shards at deterministic boundaries and write them.

`plan_shards` walks the parts' document lengths in input order (one part in memory at a time) and
closes a shard before the document that would take it past `shard_tokens` (a document larger
than that gets a shard of its own; documents are never split). The boundaries therefore depend
only on the documents and the setting, never on how pass 1 was scheduled. Shards are named
`shard-NNNNN`; for a remix input, pack plans each group's parts alone, so its shards are
`<group>-NNNNN` and hold that group only.

`write_shard` (a Ray task) copies its documents' token bytes from the parts' token files into
`shard-NNNNN.bin`, writes `shard-NNNNN.idx` (`index_bytes`: the bytes IndexedDatasetBuilder
writes; the format's reader is crawlmill/shards/mmidx.py) and `shard-NNNNN.docs.parquet` (the source
of every document: input part, row, id, url, WARC file/offset/record id, tokens, bytes), each under
a temporary name, then renames them and returns the shard's entry (sizes, sha256, document, token
and text byte counts), which the runner writes as its marker.

Run by `crawlmill pack` (stage.py) after pass 1 (encode.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, as_path, atomic_path, file_size, open_binary, read_schema, read_table
from crawlmill.shards.mmidx import CODE_OF, MAGIC

from ..parts import PARQUET_OPTIONS
from .encode import DOCS_SCHEMA, add_counts, breakdown_json, docs_path, tokens_path

COPY_CHUNK = 8 << 20


def index_bytes(lengths: np.ndarray, dtype: np.dtype | type) -> bytes:
    """The .idx bytes for documents of one sequence each with these token lengths: exactly what
    `IndexedDatasetBuilder.finalize` writes (as preprocess_data.py without --split-sentences)."""
    dtype = np.dtype(dtype)
    lengths = np.asarray(lengths, dtype=np.int32)
    count = len(lengths)
    pointers = np.zeros(count, dtype=np.int64)
    if count > 1:
        np.cumsum(lengths[:-1].astype(np.int64) * dtype.itemsize, out=pointers[1:])
    header = MAGIC + struct.pack("<Q", 1) + struct.pack("<B", CODE_OF[dtype.name])
    header += struct.pack("<Q", count) + struct.pack("<Q", count + 1)
    documents = np.arange(count + 1, dtype=np.int64)
    return b"".join((header, lengths.tobytes(), pointers.tobytes(), documents.tobytes()))


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
    prefix: str = "shard"  # remix input: the group, so its shards are <group>-00000, ...

    @property
    def name(self) -> str:
        return f"{self.prefix}-{self.number:05d}"


def part_lengths(work_dir: AnyPath, part: int) -> np.ndarray:
    table = read_table(docs_path(work_dir, part), columns=["tokens"])
    return table.column("tokens").to_numpy().astype(np.int64)


def plan_shards(work_dir: AnyPath, parts: int | Sequence[int], shard_tokens: int, itemsize: int, prefix: str = "shard") -> list[ShardPlan]:
    """Shard boundaries over `parts` (pass-1 part numbers, or a count: 0..parts-1) in order (see
    the module docstring)."""
    parts = range(parts) if isinstance(parts, int) else parts
    shards: list[ShardPlan] = []
    current = ShardPlan(0, prefix=prefix)
    for part in parts:
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
                current = ShardPlan(len(shards), prefix=prefix)
    if current.documents:
        shards.append(current)
    return shards


def _copy_range(source: AnyPath, start: int, end: int, out: Any, digest: Any) -> None:
    with open_binary(source) as f:
        f.seek(start)
        left = end - start
        while left:
            chunk = f.read(min(COPY_CHUNK, left))
            if not chunk:
                raise OSError(f"{source} ended {left} bytes early (its pass-1 output is damaged; delete the output and rerun)")
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)


def _docs_slice(work_dir: AnyPath, piece: Piece) -> pa.Table:
    path = docs_path(work_dir, piece.part)
    if read_schema(path).names != DOCS_SCHEMA.names:  # reading it with DOCS_SCHEMA would give nulls
        raise ValueError(f"{path} was written by an older pack (other columns); delete the output folder and pack again")
    table = read_table(path, schema=DOCS_SCHEMA)
    return table.slice(piece.doc_start, piece.doc_end - piece.doc_start)


def _source(row: dict[str, Any]) -> dict[str, Any]:
    return {"input": row["input"], "row": row["row"], "id": row["id"]}


def write_shard(dtype_name: str, plan: ShardPlan, output_dir: str) -> dict[str, Any]:
    """Write one shard's .bin, .idx and .docs.parquet; return its manifest entry.

    Streams piece by piece: memory holds one part's document table and the shard's lengths
    (4 bytes a document), never its tokens."""
    output = as_path(output_dir)
    work = output / "_work"
    name = plan.name
    finals = {kind: output / f"{name}.{kind}" for kind in ("bin", "idx", "docs.parquet")}
    digests = {kind: hashlib.sha256() for kind in finals}
    lengths, ranges, first, last = [], [], None, None
    text_bytes = 0
    breakdown: dict[str, dict[str, list[int]]] = {"dump": {}, "lang": {}}
    with contextlib.ExitStack() as files:
        # Renamed innermost first: the .idx last, so a shard whose .idx exists is complete.
        tmps = {kind: files.enter_context(atomic_path(finals[kind])) for kind in ("idx", "bin", "docs.parquet")}
        with open(tmps["bin"], "wb") as out, pq.ParquetWriter(tmps["docs.parquet"], DOCS_SCHEMA, **PARQUET_OPTIONS) as docs:
            for piece in plan.pieces:
                _copy_range(tokens_path(work, piece.part), piece.byte_start, piece.byte_end, out, digests["bin"])
                table = _docs_slice(work, piece)
                docs.write_table(table)
                piece_lengths = table.column("tokens").to_numpy()
                piece_bytes = table.column("bytes").to_numpy()
                lengths.append(piece_lengths)
                text_bytes += int(piece_bytes.sum())
                for key, counts in breakdown.items():
                    add_counts(counts, table.column(key).to_pylist(), piece_lengths, piece_bytes)
                rows = table.column("row")
                # Input rows the piece spans (a row dropped as empty_tokens or quarantined inside a span is in no shard).
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
    return {
        "prefix": name,
        "documents": plan.documents,
        "tokens": plan.tokens,
        "bytes": text_bytes,
        "files": {
            kind: {"name": finals[kind].name, "bytes": file_size(finals[kind]), "sha256": digests[kind].hexdigest()}
            for kind in ("bin", "idx", "docs.parquet")
        },
        "source": {"first": first, "last": last, "ranges": ranges},
        "by_dump": breakdown_json(breakdown["dump"]),
        "by_lang": breakdown_json(breakdown["lang"]),
    }
