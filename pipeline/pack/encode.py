"""Pack, pass 1: tokenize one input part (a Ray task) into a token file and a per-document table.

For input part N (a stage's `part-NNNNN.parquet`, read in row order in bounded batches) it writes::

    _work/tokens/part-NNNNN.bin            the part's tokens, each document followed by EOD (shard dtype)
    _work/tokens/part-NNNNN.docs.parquet   one row per packed document: input, row, id, url, dump, lang,
                                           domain, warc_file, warc_offset, warc_record_id, tokens, bytes
    _work/domains/part-NNNNN.shuffle       documents, tokens, bytes per domain, split by domain hash
                                           (domains.py sums them by runs of 64 parts, then by partition)
and returns the part's counts (in == packed + dropped + quarantined) and document / token / byte counts per dump
and language, which the runner writes as `_parts/part-NNNNN.json`, last: it marks the part done.

`bytes` is each document's UTF-8 byte count (crawlmill.shards.tokenbytes.document_bytes: a lone
surrogate would count its 3 "surrogatepass" bytes, as tokenizer/codec.py encodes it), the denominator
of exact bits per byte; the token table of crawlmill.shards.tokenbytes sums to it over the document's
tokens.

Every input row ends as packed, or dropped as `empty_tokens` (its text encodes to no token at all,
only possible for an empty string: preprocess_data.py would write a document of zero sequences,
which GPTDataset cannot sample; we drop and count it), or, without its `id` or `text` (a foreign
part's null), quarantined as `no_id` / `no_text` in `_quarantine/part-NNNNN.parquet` with its row. Files are written under a temporary name and
renamed; nothing depends on scheduling, so a part's outputs are the same bytes on every run.

Run by `crawlmill pack` (stage.py); `encode_part(settings, 0, "out/filter/part-00000.parquet", "out/shards")`
runs one part without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, as_path, atomic_path, parquet_file
from crawlmill.shards.tokenbytes import document_bytes

from ..partfile import Quarantine
from ..parts import PARQUET_OPTIONS, PartStats, part_name
from ..urls import UNKNOWN, domain_of
from .domains import write_part_domains
from .tokenizer import DocumentEncoder, TokenizerInfo

TOKENS_DIR = "tokens"
DOCS_SCHEMA = pa.schema(
    [
        pa.field("input", pa.int32(), nullable=False),  # input part number (manifest "inputs")
        pa.field("row", pa.int64(), nullable=False),  # row in that part
        pa.field("id", pa.string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("dump", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("domain", pa.string()),
        pa.field("warc_file", pa.string()),
        pa.field("warc_offset", pa.int64()),
        pa.field("warc_record_id", pa.string()),
        pa.field("tokens", pa.int32(), nullable=False),  # EOD included
        pa.field("bytes", pa.int64(), nullable=False),  # UTF-8 bytes of the text (tokenbytes.document_bytes)
    ]
)
READ_COLUMNS = ["id", "text", "url", "dump", "lang", "warc_file", "warc_offset", "warc_record_id"]


@dataclass
class PackSettings:
    """What every pack task needs (shipped to Ray once)."""

    tokenizer: TokenizerInfo
    batch_rows: int = 1024
    batch_bytes: int = 8 << 20  # text per encode_batch call: memory is bounded by the batch
    threads: int = 1  # tokenizers threads per task
    domain_partitions: int = 1  # hash partitions of the per-domain counts (domains.py)
    fast_encode: bool = True  # the faster exact path for DeepSeek-style tokenizers (tokenizer/fastencode.py)
    special_as_text: bool = False  # PackConfig.special_tokens_in_text == "text"


_ENCODERS: dict[tuple[str, str, int, bool, bool], DocumentEncoder] = {}


def worker_encoder(info: TokenizerInfo, threads: int, fast: bool, special_as_text: bool = False) -> DocumentEncoder:
    """One loaded tokenizer per worker process: a Ray worker runs many part tasks, loading
    tokenizer.json costs about 0.2 s each time, and the encoder's memo of words carries over."""
    key = (info.path, info.sha256, threads, fast, special_as_text)
    if key not in _ENCODERS:
        _ENCODERS.clear()
        _ENCODERS[key] = DocumentEncoder(info, threads, fast, special_as_text)
    return _ENCODERS[key]


def tokens_path(work_dir: AnyPath, index: int) -> AnyPath:
    return work_dir / TOKENS_DIR / f"{part_name(index)}.bin"


def docs_path(work_dir: AnyPath, index: int) -> AnyPath:
    return work_dir / TOKENS_DIR / f"{part_name(index)}.docs.parquet"


def add_counts(table: dict[str, list[int]], labels: list[str | None], tokens: np.ndarray, text_bytes: np.ndarray) -> None:
    """Count documents, tokens and bytes per label (dump, language or domain)."""
    for label, n, b in zip(labels, tokens.tolist(), text_bytes.tolist()):
        entry = table.setdefault(label or UNKNOWN, [0, 0, 0])
        entry[0] += 1
        entry[1] += n
        entry[2] += b


def breakdown_json(table: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    return {label: {"documents": d, "tokens": t, "bytes": b} for label, (d, t, b) in sorted(table.items())}


def encode_part(settings: PackSettings, index: int, source: str, output_dir: str) -> dict[str, Any]:
    """Tokenize one input part; returns its counts (the runner writes them as its marker)."""
    output = as_path(output_dir)
    work = output / "_work"
    encoder = worker_encoder(settings.tokenizer, settings.threads, settings.fast_encode, settings.special_as_text)
    stats = PartStats(index=index, source=source)
    breakdown: dict[str, dict[str, list[int]]] = {"dump": {}, "lang": {}, "domain": {}}
    row = 0
    # The .bin is renamed last: nested atomic paths rename innermost first; the quarantine file after it.
    with (
        Quarantine(output, index, source, "pack") as quarantine,
        atomic_path(tokens_path(work, index)) as bin_tmp,
        atomic_path(docs_path(work, index)) as docs_tmp,
    ):
        with open(bin_tmp, "wb") as bin_file, pq.ParquetWriter(docs_tmp, DOCS_SCHEMA, **PARQUET_OPTIONS) as docs:
            parquet = parquet_file(source)
            columns = [c for c in READ_COLUMNS if c in parquet.schema_arrow.names]
            for batch in _batches(parquet, columns, settings):
                rows = np.arange(row, row + batch.num_rows, dtype=np.int64)  # the input rows, kept in docs.parquet
                row += batch.num_rows
                batch, rows = _whole_rows(batch, rows, quarantine)
                if not batch.num_rows:
                    continue
                texts = batch.column("text").to_pylist()
                tokens, lengths = encoder.encode_documents(texts)
                if spelled := encoder.count_special(texts):  # only when some: a corpus without any keeps its counters
                    stats.counters["special_token_in_text"] += spelled
                bin_file.write(tokens.tobytes())
                kept = lengths > 0
                stats.records_in += len(texts)
                stats.kept += int(kept.sum())
                if not kept.all():
                    stats.dropped["empty_tokens"] += int((~kept).sum())
                table = _docs_table(batch, index, rows, lengths, document_bytes(texts)).filter(pa.array(kept))
                docs.write_table(table)
                kept_lengths = lengths[kept]
                stats.counters["tokens"] += int(kept_lengths.sum())
                kept_bytes = table.column("bytes").to_numpy()
                for key, counts in breakdown.items():
                    add_counts(counts, table.column(key).to_pylist(), kept_lengths, kept_bytes)
    stats.quarantined = quarantine.count
    stats.records_in += quarantine.count
    domains = breakdown.pop("domain")
    write_part_domains(work, index, domains, settings.domain_partitions)
    return {**stats.to_json(), "domains": len(domains), "breakdown": {k: breakdown_json(v) for k, v in breakdown.items()}}


def _batches(parquet: pq.ParquetFile, columns: list[str], settings: PackSettings):  # noqa: ANN202 - generator
    """Record batches of at most batch_rows rows and, as far as a row allows, batch_bytes of text."""
    for batch in parquet.iter_batches(batch_size=settings.batch_rows, columns=columns):
        text_bytes = batch.column("text").nbytes
        if text_bytes <= settings.batch_bytes or batch.num_rows == 1:
            yield batch
            continue
        pieces = -(-text_bytes // settings.batch_bytes)
        step = max(1, -(-batch.num_rows // pieces))
        for start in range(0, batch.num_rows, step):
            yield batch.slice(start, step)


def _whole_rows(batch: pa.RecordBatch, rows: np.ndarray, quarantine: Quarantine) -> tuple[pa.RecordBatch, np.ndarray]:
    """The batch and its input rows without the rows that lack an id or text (a foreign part's
    null), which are quarantined (`no_id` / `no_text`): no text to tokenize, no id to trace a token to."""
    if not batch.column("id").null_count and not batch.column("text").null_count:
        return batch, rows  # every part a stage wrote: nothing to look at row by row
    values = batch.select(["id", "text"]).to_pylist()
    whole = np.array([not quarantine.incomplete(v, int(r)) for v, r in zip(values, rows.tolist())], dtype=bool)
    return batch.filter(pa.array(whole)), rows[whole]


def _docs_table(batch: pa.RecordBatch, index: int, rows: np.ndarray, lengths: np.ndarray, text_bytes: np.ndarray) -> pa.Table:
    n = batch.num_rows

    def column(name: str) -> pa.Array:
        if name in batch.schema.names:
            return batch.column(name)
        return pa.nulls(n, DOCS_SCHEMA.field(name).type)

    urls = column("url").to_pylist()
    return pa.table(
        {
            "input": pa.array(np.full(n, index, dtype=np.int32)),
            "row": pa.array(rows),
            "id": column("id"),
            "url": column("url"),
            "dump": column("dump"),
            "lang": column("lang"),
            "domain": pa.array([domain_of(u) for u in urls], pa.string()),
            "warc_file": column("warc_file"),
            "warc_offset": column("warc_offset"),
            "warc_record_id": column("warc_record_id"),
            "tokens": pa.array(lengths, pa.int32()),
            "bytes": pa.array(text_bytes, pa.int64()),
        },
        schema=DOCS_SCHEMA,
    )
