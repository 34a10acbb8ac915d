"""Look inside shards: sample documents (decoded with the tokenizer), length and token-frequency statistics.

    crawlmill shards sample out/shards --n 5 --seed 1 --decode
    crawlmill shards stats out/shards --plot stats.png

Both validate every index before reading tokens through it (shardset / mmidx), read token files in
chunks (stats) or only the sampled documents (sample), and keep memory at one vocabulary-sized
count array, a count per document length and fixed-size chunks. Shards at a URL: sample range-reads just the sampled
documents' tokens, stats streams each .bin once (shardset's docstring).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from crawlmill.bytelevel import CHAR_TO_BYTE
from crawlmill.files import as_path, atomic_path, file_size, is_remote, read_range, sha256_file
from crawlmill.local_cache import local_copy

from .mmidx import IndexFile, ShardError, check_index, read_index, scan_tokens
from .shardset import ShardSet, open_shards


class DecoderError(ValueError):
    """No tokenizer to decode the shards with (the message says what to give)."""

MAX_UNKNOWN_VOCAB = 1 << 22  # without a manifest or --vocab-size, token counts stop at this id
BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece-style byte tokens


def _manifest_tokenizer(shard_set: ShardSet) -> dict[str, Any]:
    return (shard_set.manifest or {}).get("tokenizer") or {}


def load_decoder(shard_set: ShardSet, tokenizer_dir: str | Path | None) -> tuple[Any, bool]:
    """The tokenizers.Tokenizer to decode with (--tokenizer, else the one the manifest names), and
    whether its tokenizer.json differs from the one the shards were packed with."""
    from tokenizers import Tokenizer

    folder = tokenizer_dir or _manifest_tokenizer(shard_set).get("path")
    if folder is None:
        raise DecoderError("no manifest names the tokenizer: give --tokenizer DIR to decode")
    path = as_path(folder) / "tokenizer.json"
    if not path.is_file():
        raise DecoderError(f"{path} not found: give --tokenizer DIR to decode")
    path = local_copy(path) if is_remote(path) else path  # a URL's tokenizer: copied once per machine
    tokenizer = Tokenizer.from_file(str(path))
    expected = _manifest_tokenizer(shard_set).get("sha256")
    return tokenizer, bool(expected and sha256_file(path) != expected)


def _checked_indexes(shard_set: ShardSet) -> list[IndexFile]:
    indexes = []
    for shard in shard_set.shards:
        index = read_index(shard.path("idx"))
        bin_path = shard.path("bin")
        check_index(index, file_size(bin_path) if bin_path.exists() else None, bin_path)
        indexes.append(index)
    return indexes


def sample_documents(path: str | Path, n: int, seed: int = 0, tokenizer_dir: str | Path | None = None, decode: bool = False) -> list[dict[str, Any]]:
    """`n` documents drawn uniformly without replacement over all shards (the same for the same seed):
    shard, document number, token count, source (from the shard's docs table) and token ids or text."""
    shard_set = open_shards(path)
    indexes = _checked_indexes(shard_set)
    counts = np.array([index.sequence_count for index in indexes], dtype=np.int64)
    total = int(counts.sum())
    if total == 0 or n <= 0:
        return []
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(n, total), replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    decoder, mismatch = load_decoder(shard_set, tokenizer_dir) if decode else (None, False)
    out = []
    opened: dict[str, Any] = {}  # Parquet files by path (at most OPEN_FILES): a sampled row read from its row group alone
    for number in chosen.tolist():
        s = int(np.searchsorted(starts, number, side="right")) - 1
        shard, index, local = shard_set.shards[s], indexes[s], number - int(starts[s])
        pointer, length = int(index.pointers[local]), int(index.lengths[local])
        # Only this document's bytes (one ranged GET for a URL); check_index bounded them by the .bin.
        tokens = np.frombuffer(read_range(shard.path("bin"), pointer, length * index.dtype.itemsize), dtype=index.dtype)
        item: dict[str, Any] = {"shard": shard.name, "document": local, "tokens": length}
        docs = shard.path("docs.parquet")
        if docs.is_file():
            row = _parquet_row(docs, local, opened)
            if row:
                item["source"] = {k: v for k, v in row[0].items() if k != "tokens"}
                if shard_set.manifest and isinstance(row[0].get("input"), int):
                    inputs = shard_set.manifest.get("inputs", [])
                    if 0 <= row[0]["input"] < len(inputs):
                        item["source"]["input_path"] = inputs[row[0]["input"]]
                        fields = corpus_fields_of(inputs[row[0]["input"]], row[0].get("row"), row[0].get("id"), opened)
                        if fields is not None:
                            item["source"]["corpus_fields"] = fields
        if decoder is not None:
            item["text"] = decoder.decode(tokens.astype(np.int64).tolist(), skip_special_tokens=False)
            if mismatch:
                item["warning"] = "the tokenizer given is not the one the shards were packed with"
        else:
            item["token_ids"] = tokens[:64].astype(np.int64).tolist()
        out.append(item)
    return out


OPEN_FILES = 16  # Parquet files sample keeps open at once (one per shard's docs.parquet and input part otherwise)


def _opened(path: Any, opened: dict[str, Any]) -> Any:
    """`path`'s ParquetFile from `opened`, opened (and the least recently used one closed) if not there."""
    from crawlmill.files import parquet_file

    key = str(path)
    if key in opened:
        opened[key] = opened.pop(key)  # most recently used last
    else:
        if len(opened) >= OPEN_FILES:
            opened.pop(next(iter(opened))).close()
        opened[key] = parquet_file(path)
    return opened[key]


def _parquet_row(path: Any, row: int, opened: dict[str, Any], columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Row `row` of a Parquet file, read from the row group that holds it ([] past its end): a
    shard's docs.parquet holds a row per document, millions for a large shard."""
    parquet, start = _opened(path, opened), 0
    for group in range(parquet.num_row_groups):
        rows = parquet.metadata.row_group(group).num_rows
        if row < start + rows:
            return parquet.read_row_group(group, columns=columns).slice(row - start, 1).to_pylist()
        start += rows
    return []


def corpus_fields_of(input_part: str, row: Any, doc_id: Any, opened: dict[str, Any] | None = None) -> str | None:
    """A document's `corpus_fields` (a corpus's own fields, ingest --keep-field), from its row of
    the part pack read: one column of one row group. None when the part is gone, has no such column
    or no longer holds that document there (made again since). `opened`: Parquet files already open."""
    if not isinstance(row, int) or row < 0:
        return None
    opened = {} if opened is None else opened
    try:
        parquet = _opened(input_part, opened)
    except (FileNotFoundError, ValueError):  # gone, or no Parquet file now (ArrowInvalid); other errors are said
        return None
    if "corpus_fields" not in parquet.schema_arrow.names:
        return None
    found = _parquet_row(input_part, row, opened, columns=["id", "corpus_fields"])
    return found[0]["corpus_fields"] if found and found[0]["id"] == doc_id else None


def token_text(decoder: Any, token_id: int) -> dict[str, str]:
    """`{"token": text}` for a token that decodes to whole characters. A token that is part of one
    (a byte-level BPE's single bytes, SentencePiece's <0xNN>) decodes to U+FFFD alone: then
    `{"token": its text with those bytes as \\xNN, "bytes": its bytes in hex}`, so that the list
    says which bytes they are."""
    text = decoder.decode([token_id], skip_special_tokens=False)
    if "\ufffd" not in text:
        return {"token": text}
    piece = decoder.id_to_token(token_id) or ""
    fallback = BYTE_FALLBACK.fullmatch(piece)
    if fallback:
        raw = bytes.fromhex(fallback.group(1))
    elif piece and all(c in CHAR_TO_BYTE for c in piece):  # the byte-level alphabet: one character per byte
        raw = bytes(CHAR_TO_BYTE[c] for c in piece)
    else:
        return {"token": text}
    try:
        raw.decode("utf-8")
        return {"token": text}  # whole characters after all: the token is U+FFFD itself
    except UnicodeDecodeError:
        return {"token": raw.decode("utf-8", "backslashreplace"), "bytes": raw.hex()}


class LengthHistogram:
    """Documents per length (tokens), exact: a count array up to DENSE_LENGTHS, a count per distinct
    length above it. Memory is bounded by the longest document, never by the number of documents
    (one 4-byte length each, 4 GB at 10^9 documents, was held before)."""

    DENSE_LENGTHS = 1 << 16

    def __init__(self) -> None:
        self.dense = np.zeros(self.DENSE_LENGTHS, dtype=np.int64)
        self.long: dict[int, int] = {}

    def add(self, lengths: np.ndarray) -> None:
        lengths = np.asarray(lengths)
        short = lengths[lengths < self.DENSE_LENGTHS]
        self.dense += np.bincount(short, minlength=self.DENSE_LENGTHS)[: self.DENSE_LENGTHS]
        for value, n in zip(*np.unique(lengths[lengths >= self.DENSE_LENGTHS], return_counts=True)):
            self.long[int(value)] = self.long.get(int(value), 0) + int(n)

    def values_and_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct lengths, ascending, and how many documents have each."""
        present = np.flatnonzero(self.dense)
        longer = sorted(self.long)
        return (np.concatenate([present, np.array(longer, dtype=np.int64)]).astype(np.int64),
                np.concatenate([self.dense[present], np.array([self.long[v] for v in longer], dtype=np.int64)]))  # fmt: skip

    def summary(self) -> dict[str, float]:
        """Mean, median, p90, p99 (numpy's linear interpolation between the ranks around each), min, max."""
        values, counts = self.values_and_counts()
        n = int(counts.sum())
        if not n:
            return {}
        ends = np.cumsum(counts)  # the documents of values[i] hold ranks ends[i-1] .. ends[i] - 1

        def at(rank: int) -> int:
            return int(values[np.searchsorted(ends, rank, side="right")])

        def percentile(q: float) -> float:
            position = q / 100 * (n - 1)
            low = int(np.floor(position))
            a, b, t = at(low), at(min(low + 1, n - 1)), position - low
            return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)  # numpy's lerp, to the last bit

        return {
            "mean": round(float((values * counts).sum() / n), 2),
            "median": percentile(50),
            "p90": percentile(90),
            "p99": percentile(99),
            "min": int(values[0]),
            "max": int(values[-1]),
        }


def shard_stats(path: str | Path, vocab_size: int | None = None, top: int = 20, tokenizer_dir: str | Path | None = None) -> tuple[dict[str, Any], LengthHistogram, np.ndarray]:
    """Document-length summary and histogram, token frequencies (top ids, decoded when a tokenizer
    is at hand); returns the report, the documents per length and the per-token-id counts."""
    shard_set = open_shards(path)
    indexes = _checked_indexes(shard_set)
    vocab = vocab_size or _manifest_tokenizer(shard_set).get("padded_vocab_size")
    if vocab is None:
        high = max((scan_tokens(s.path("bin"), i.dtype)[1] for s, i in zip(shard_set.shards, indexes)), default=-1)
        if high >= MAX_UNKNOWN_VOCAB:
            raise ShardError(shard_set.root, f"token id {high} is implausibly large; give --vocab-size")
        vocab = high + 1
    counts = np.zeros(max(int(vocab), 1), dtype=np.int64)
    lengths = LengthHistogram()
    for shard, index in zip(shard_set.shards, indexes):
        scan_tokens(shard.path("bin"), index.dtype, int(vocab), counts=counts)
        lengths.add(index.lengths)
    order = np.argsort(-counts, kind="stable")[: max(top, 0)]  # a negative top would slice from the end
    decoder = None
    try:
        decoder, _ = load_decoder(shard_set, tokenizer_dir)
    except DecoderError:
        pass
    top_tokens = [
        {"id": int(i), "count": int(counts[i]), **(token_text(decoder, int(i)) if decoder else {})}
        for i in order
        if counts[i]
    ]
    total = int(counts.sum())
    report = {
        "path": shard_set.label,
        "documents": sum(len(index.lengths) for index in indexes),
        "tokens": total,
        "document_tokens": lengths.summary(),
        "vocabulary": int(vocab),
        "token_ids_used": int((counts > 0).sum()),
        "top_tokens": top_tokens,
    }
    return report, lengths, counts


def plot_stats(report: dict[str, Any], lengths: LengthHistogram, counts: np.ndarray, out: str | Path) -> None:
    """Two histograms in one PNG: document lengths (log bins) and token frequencies (how many token
    ids occur about k times, log-log). Written atomically (a path or a URL; missing folders made):
    an interrupted run leaves no half-written image under the name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    values, documents = lengths.values_and_counts()
    if len(values):
        bins = np.unique(np.geomspace(1, max(int(values[-1]), 2) + 1, 60).astype(np.int64))
        left.hist(values, bins=bins, weights=documents, color="#4c72b0")
        left.set_xscale("log")
    left.set_title(f"document length ({report['documents']:,} documents, median {report['document_tokens'].get('median', 0):.0f})")
    left.set_xlabel("tokens per document (EOD included)")
    left.set_ylabel("documents")
    used = counts[counts > 0]
    if len(used):
        bins = np.geomspace(1, int(used.max()) + 1, 60)
        right.hist(used, bins=bins, color="#dd8452")
        right.set_xscale("log")
        right.set_yscale("log")
    right.set_title(f"token frequency ({report['token_ids_used']:,} of {report['vocabulary']:,} ids used)")
    right.set_xlabel("occurrences of a token id")
    right.set_ylabel("token ids")
    fig.tight_layout()
    # The format named, not left to matplotlib to guess from the temporary's name: it would add
    # ".png" to a name without a suffix, and the rename would miss the file.
    suffix = as_path(out).suffix.lstrip(".").lower()
    image_format = suffix if suffix in fig.canvas.get_supported_filetypes() else "png"
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=image_format, dpi=110)
    finally:
        plt.close(fig)
