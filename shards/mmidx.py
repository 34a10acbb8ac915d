"""Megatron-Core's MMIDIDX `.idx` format: its constants, and a reader that validates before it maps.

Layout (megatron/core/datasets/indexed_dataset.py, `_IndexWriter`), all little-endian::

    b"MMIDIDX\\x00\\x00"  u64 version = 1  u8 dtype code  u64 sequence_count  u64 document_count
    int32[sequence_count]  sequence lengths (tokens)
    int64[sequence_count]  sequence pointers (byte offsets into .bin, contiguous)
    int64[document_count]  document indices (0, then the end sequence of every document)
    [int8[sequence_count]  sequence modes, multimodal datasets only]

The writer is pack's (crawlmill/pipeline/pack/shards.py, `index_bytes`); this module only reads.

`read_index` trusts nothing: it checks magic, version, dtype code and that the counts describe
exactly the file's size before mapping anything, so a forged count can never cause a large
allocation; `check_index` then walks lengths, pointers and document indices in fixed-size chunks
(bounded memory, time linear in the file). Every problem raises ShardError naming the file.

    from crawlmill.shards.mmidx import read_index, check_index
    index = read_index("out/shards/shard-00000.idx"); check_index(index, bin_size=...)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crawlmill.files import as_path, file_size, is_remote, open_binary
from crawlmill.local_cache import local_copy

MAGIC = b"MMIDIDX\x00\x00"
HEADER_SIZE = 34  # magic 9 + version 8 + dtype 1 + sequence count 8 + document count 8
# Megatron-Core's DType codes.
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8), 2: np.dtype(np.int8), 3: np.dtype(np.int16), 4: np.dtype(np.int32),
    5: np.dtype(np.int64), 6: np.dtype(np.float64), 7: np.dtype(np.float32), 8: np.dtype(np.uint16),
}  # fmt: skip
TOKEN_CODES = {1, 2, 3, 4, 5, 8}  # integer dtypes; float codes are never token data
CODE_OF = {dtype.name: code for code, dtype in DTYPE_CODES.items()}
CHUNK = 1 << 20  # entries per chunk when walking arrays: memory stays at a few MB


class ShardError(ValueError):
    """A shard file is unreadable or inconsistent; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


@dataclass
class IndexFile:
    """A validated header plus read-only views of the arrays (memory-mapped, nothing loaded)."""

    path: str
    dtype: np.dtype
    sequence_count: int
    document_count: int  # entries of document_indices: documents + 1
    multimodal: bool
    file_size: int
    lengths: np.ndarray
    pointers: np.ndarray
    document_indices: np.ndarray

    @property
    def documents(self) -> int:
        return self.document_count - 1


def read_index(path: str | Path, multimodal: bool | None = None) -> IndexFile:
    """Parse and size-check an .idx file; ShardError if it is not a well-formed MMIDIDX file.

    `multimodal=None` accepts either layout (decided by the file size). An index at a URL is
    copied to the local cache first (crawlmill.local_cache.local_copy: once per machine and version; an
    .idx is small beside its .bin) and mapped there; errors still name the URL.
    """
    path = as_path(path)
    try:
        local = local_copy(path) if is_remote(path) else path
        size = os.path.getsize(local)
        with open(local, "rb") as f:
            head = f.read(HEADER_SIZE)
    except OSError as exc:
        raise ShardError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(head) < HEADER_SIZE:
        if head[: len(MAGIC)] != MAGIC[: len(head[: len(MAGIC)])]:
            raise ShardError(path, "not an MMIDIDX index (wrong magic bytes)")
        raise ShardError(path, f"truncated: {size} bytes, shorter than the {HEADER_SIZE}-byte header")
    if head[:9] != MAGIC:
        raise ShardError(path, f"not an MMIDIDX index (magic {head[:9]!r}, expected {MAGIC!r})")
    (version,) = struct.unpack_from("<Q", head, 9)
    if version != 1:
        raise ShardError(path, f"unsupported index version {version} (expected 1)")
    code = head[17]
    if code not in TOKEN_CODES:
        raise ShardError(path, f"dtype code {code} is not an integer token dtype (valid: {sorted(TOKEN_CODES)})")
    sequences, documents = struct.unpack_from("<QQ", head, 18)
    # Python integers: a forged count cannot overflow here, and nothing is allocated from it.
    plain = HEADER_SIZE + sequences * (4 + 8) + documents * 8
    layouts = {False: plain, True: plain + sequences}
    if multimodal is None:
        matches = [m for m, expected in layouts.items() if expected == size]
        if not matches:
            raise ShardError(
                path,
                f"counts do not match the file size: {sequences:,} sequences and {documents:,} document "
                f"entries need {plain:,} bytes, the file has {size:,} (truncated, or forged counts)",
            )
        multimodal = matches[0]
    elif layouts[multimodal] != size:
        raise ShardError(
            path, f"counts need {layouts[multimodal]:,} bytes, the file has {size:,} (truncated, or forged counts)"
        )
    if documents < 1:
        raise ShardError(path, "document count is 0 (it must hold at least the leading 0 entry)")
    mapped = np.memmap(local, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    offset = HEADER_SIZE
    lengths = mapped[offset : offset + 4 * sequences].view(np.int32)
    offset += 4 * sequences
    pointers = mapped[offset : offset + 8 * sequences].view(np.int64)
    offset += 8 * sequences
    document_indices = mapped[offset : offset + 8 * documents].view(np.int64)
    return IndexFile(
        str(path), DTYPE_CODES[code], sequences, documents, multimodal, size, lengths, pointers, document_indices
    )


def check_index(index: IndexFile, bin_size: int | None = None, bin_path: str | Path | None = None) -> int:
    """Check every entry of a read index against itself and the .bin size; return the token count.

    Walks the arrays in chunks of CHUNK entries: lengths non-negative, pointers contiguous from 0,
    the last sequence ending exactly at the end of the .bin, document indices starting at 0,
    non-decreasing and ending at the sequence count.
    """
    path, itemsize = index.path, index.dtype.itemsize
    expected_pointer = 0  # Python int: sums of forged lengths cannot overflow
    for start in range(0, index.sequence_count, CHUNK):
        lengths = index.lengths[start : start + CHUNK].astype(np.int64)
        pointers = np.asarray(index.pointers[start : start + CHUNK])
        if (lengths < 0).any():
            bad = start + int(np.argmax(lengths < 0))
            raise ShardError(path, f"sequence {bad} has a negative length {int(index.lengths[bad])}")
        should = np.empty(len(lengths), dtype=np.int64)
        should[0] = expected_pointer
        if len(lengths) > 1:
            np.cumsum(lengths[:-1] * itemsize, out=should[1:])
            should[1:] += expected_pointer
        if (pointers != should).any():
            bad = int(np.argmax(pointers != should))
            raise ShardError(
                path,
                f"sequence {start + bad} points at byte {int(pointers[bad]):,} of the .bin, expected "
                f"{int(should[bad]):,} (pointers must follow the lengths contiguously)",
            )
        expected_pointer = int(should[-1]) + int(lengths[-1]) * itemsize
        if bin_size is not None and expected_pointer > bin_size:
            raise ShardError(
                path,
                f"sequences up to {start + len(lengths) - 1} need {expected_pointer:,} bytes of "
                f"{bin_path or 'the .bin'}, which has {bin_size:,} (pointers or lengths out of range)",
            )
    if bin_size is not None and expected_pointer != bin_size:
        raise ShardError(
            path, f"the sequences cover {expected_pointer:,} bytes but {bin_path or 'the .bin'} has {bin_size:,}"
        )
    previous = 0
    for start in range(0, index.document_count, CHUNK):
        chunk = np.asarray(index.document_indices[start : start + CHUNK])
        if start == 0 and chunk[0] != 0:
            raise ShardError(path, f"document indices must start at 0, found {int(chunk[0])}")
        steps = np.diff(chunk, prepend=previous)
        if (steps < 0).any():
            bad = start + int(np.argmax(steps < 0))
            raise ShardError(path, f"document index {bad} ({int(index.document_indices[bad])}) goes backwards")
        previous = int(chunk[-1])
        if previous > index.sequence_count:
            raise ShardError(path, f"document indices run past the {index.sequence_count:,} sequences (found {previous:,})")
    if previous != index.sequence_count:
        raise ShardError(path, f"the last document index is {previous:,}, expected the sequence count {index.sequence_count:,}")
    return expected_pointer // itemsize


def scan_tokens(
    bin_path: str | Path,
    dtype: np.dtype,
    vocab_size: int | None = None,
    counts: np.ndarray | None = None,
    digest: Any = None,
    visit: Callable[[np.ndarray, int], None] | None = None,
) -> tuple[int, int]:
    """Min and max token id of a .bin, read once in fixed-size chunks; ShardError for an id that is
    negative or not below `vocab_size`. Optionally adds every token's frequency to `counts` (an
    int64 array), feeds the bytes to `digest` (a hashlib object) and calls `visit(chunk, position)`
    with each chunk of checked ids and the number of its first token, in the same pass. A .bin at a
    URL is streamed (sequential reads of a buffered remote file), never loaded whole."""
    bin_path = as_path(bin_path)
    if counts is not None and vocab_size is None:
        vocab_size = len(counts)  # bincount must never size itself from a forged token id
    try:
        size = file_size(bin_path)
        f = open_binary(bin_path)
    except OSError as exc:
        raise ShardError(bin_path, f"cannot read: {exc.strerror or exc}") from None
    if size % dtype.itemsize:
        f.close()
        raise ShardError(bin_path, f"size {size:,} is not a multiple of the {dtype.name} token size")
    low, high, position = 0, -1, 0
    buffer = bytearray(CHUNK * 4 * dtype.itemsize)
    with f:
        while True:
            read = f.readinto(buffer)
            if not read:
                break
            if read % dtype.itemsize:  # a short read mid-token: read the rest of it
                extra = f.read(dtype.itemsize - read % dtype.itemsize)
                buffer[read : read + len(extra)] = extra
                read += len(extra)
            view = memoryview(buffer)[:read]
            if digest is not None:
                digest.update(view)
            chunk = np.frombuffer(view, dtype=dtype)
            cmin, cmax = int(chunk.min()), int(chunk.max())
            if cmin < 0:
                bad = position + int(np.argmax(chunk < 0))
                raise ShardError(bin_path, f"token {bad:,} has a negative id {cmin}")
            if vocab_size is not None and cmax >= vocab_size:
                bad = position + int(np.argmax(chunk >= vocab_size))
                raise ShardError(bin_path, f"token {bad:,} has id {int(chunk[bad - position])}, not below the vocabulary size {vocab_size:,}")
            if counts is not None:
                counts += np.bincount(chunk, minlength=len(counts))[: len(counts)]
            if visit is not None:
                visit(chunk, position)
            low = cmin if high < 0 else min(low, cmin)
            high = max(high, cmax)
            position += len(chunk)
            del view, chunk
    return low, high
