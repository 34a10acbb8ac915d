"""The one document schema every stage reads and writes, and the quarantine schema.

Every stage's Parquet parts use DOCUMENT_SCHEMA; columns a stage does not know yet (`lang`,
`lang_score` before language ID) are null. `document_id` derives the stable `id` column.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("dump", pa.string()),
        pa.field("warc_record_id", pa.string()),
        pa.field("warc_file", pa.string()),
        # Compressed offset of the record's gzip member when the file is member-per-record
        # (as Common Crawl publishes it), else the offset in the uncompressed stream.
        pa.field("warc_offset", pa.int64()),
        pa.field("date", pa.string()),
        pa.field("source_format", pa.string()),  # "warc" (HTML extracted here) or "wet"
        pa.field("content_type", pa.string()),
        pa.field("charset", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("lang_score", pa.float32()),
        # A corpus of your own: the fields ingest was asked to carry (--keep-field), as one JSON
        # object; null for Common Crawl pages. Every stage passes it on with the row.
        pa.field("corpus_fields", pa.string()),
    ]
)

def with_document_columns(schema: pa.Schema) -> pa.Schema:
    """An input part's schema (for a stage that keeps its other columns): every DOCUMENT_SCHEMA
    column first, in its order (the part's own field where it has one), then the part's others. A
    part written before a column existed (corpus_fields) gives parts of the same columns, in the
    same order, as the others, and another part's values of it are not dropped."""
    own = {f.name: f for f in schema}
    return pa.schema([*(own.get(f.name, f) for f in DOCUMENT_SCHEMA), *(f for f in schema if f.name not in DOCUMENT_SCHEMA.names)])


QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("offset", pa.int64()),
        pa.field("record_id", pa.string()),
        pa.field("error", pa.string(), nullable=False),  # short machine-readable kind
        pa.field("detail", pa.string()),  # human-readable message
    ]
)


def document_id(source_record_id: str) -> str:
    """Stable 128-bit id of a document, from the WARC-Record-ID of the page's response record.

    128 bits keep the chance of any collision negligible at 10^10 documents (64 bits would not).
    WET conversion records pass their WARC-Refers-To, so a page gets the same id from WARC or WET.
    """
    return hashlib.blake2b(source_record_id.encode("utf-8"), digest_size=16).hexdigest()
