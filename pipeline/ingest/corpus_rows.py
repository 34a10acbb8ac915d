"""Your own corpus -> document rows: the JSONL, Parquet and plain-text files ingest reads (one part per file).

Which files these are is corpus_files.py's; run it as `crawlmill ingest data/mine/*.jsonl --dump
my-forum-2024 --output out/mine` (`crawlmill ingest --help`: --text-field, --id-field, --url-field,
--date-field, --txt-document). Each JSONL line, Parquet row, or plain-text line (`txt_document:
paragraph`: blank-line-separated paragraph) is one record, and is

- **kept** as a DOCUMENT_SCHEMA row: `text` from `text_field` (normalised as WET text is:
  html_text.normalize_text), `url` and `date` from their fields, `dump` the path's Common Crawl dump
  or the `dump` label, `warc_record_id` the row's own id (`id_field`, a string or an integer),
  `warc_file` the file, `warc_offset` the line number (1 = the first line; a paragraph's first line)
  or Parquet row index (0 = the first row), `source_format` jsonl/parquet/text, `content_type`
  text/plain; `id` is a 128-bit hash of the dump label, the file's name under its input's folder
  (corpus_files.corpus_name) and the row's own id, else its line or row number: distinct across
  files and datasets, the same on every rerun;
- **dropped** by reason: `blank_line` (a blank JSONL or text line), `no_text_field` (no such field,
  or null), `empty_text`, `text_too_large` (over max_text_chars, as WARC ingest names them);
- **quarantined** with the file, line or row and error: `invalid_json` (not JSON, NaN, a lone
  surrogate, nesting past 1024), `not_an_object`, `text_not_string`, `bad_id` (an id neither string
  nor integer), `bad_utf8` (more invalid UTF-8 than max_bad_utf8_share; less is replaced and counted
  in `utf8_repaired_docs`), `record_too_large` (a line or paragraph past max_record_mb, skipped
  unread), `truncated_gzip`/`corrupt_gzip` (lines before the damage are kept; a JSONL or text file
  is not resumed after it), `empty_file`, `invalid_parquet` (a file that is no Parquet, or one entry
  per row group that cannot be read, naming its rows; the other row groups are read).

Fields the schema has no column for (title, source, license...) are carried only when named in
`keep_fields` (`--keep-field title,source.name`; `*`: all of them): as one JSON object in the
document's `corpus_fields` column (corpus_fields.py: keys sorted; a Parquet timestamp as ISO 8601,
bytes as UTF-8 with invalid sequences replaced, a decimal as its digits; null when the row has none
of them). The others are not carried; `_stats.json` counts them per name (`field_not_kept:title`,
`field_not_kept:metadata.lang` beside `--url-field metadata.url`) and the stage's summary says so.
A JSONL integer past 64 bits stays exact (orjson would make it a float: such lines are parsed by
the standard library). A `url`/`date` that is not a string is left null and counted
(`url_not_string`, `date_not_string`; a Parquet timestamp becomes ISO 8601). Memory is bounded by a line (max_record_mb) or a Parquet batch of
PARQUET_BATCH_ROWS rows, never a file.

Not datatrove's JsonlReader/ParquetReader (0.10.1, read in its source and run on bad files here):
JsonlReader skips a line that is not JSON with only a log warning, crashes the whole task on a line
that is JSON but no object (`'list' object has no attribute 'get'`), reads the file as text so that
the first invalid UTF-8 byte ends the file with one warning (every line after it lost, and those
before it in the decoder's read-ahead: all of a small file's), and both readers skip rows without text after warning once per reader,
and number rows after the skips (ids shift). That is "lost silently", which ingest never does. Nor
the tokenizer trainer's readers (tokenizer/corpus.py): they count bad records without keeping where
(ten examples), group plain text in 64 KiB blocks, and a cut `.gz` ends them with EOFError. Their
conventions are kept: a `text` field (datatrove's `text_key`, `id_key` `id`), `.jsonl`/`.ndjson`
(`.gz`), plain text one document a line (as `crawlmill quality train` reads it), Parquet by
iter_batches. orjson parses (strict JSON: no NaN, no lone surrogates, which Arrow could not write).
Tested in tests/pipeline/ingest/test_corpus_rows.py (one part, no Ray) and test_corpus_pipeline.py.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from datetime import date, datetime
from typing import Any, BinaryIO, Iterator

import orjson

from ..parts import PartSink
from ..schema import document_id
from ..stage import SourceReadError
from .config import DEFAULT_ID_FIELD, IngestConfig
from .corpus_fields import MISSING, FieldSelection, field_value
from .corpus_files import JSONL, PARQUET
from .gunzip import GunzipReader
from .html_text import normalize_text

PARQUET_BATCH_ROWS = 1024
_FIELD_NAMES_COUNTED = 20  # distinct names of fields not kept counted per part; the rest as "(more)"
_BOM = b"\xef\xbb\xbf"
_LONG_DIGITS = re.compile(rb"\d{19}")  # 2**64 has 20 digits, -2**63 - 1 19
_ORJSON_WHERE = re.compile(r": line 1 column (\d+) \(char \d+\)$")  # orjson's position in the one line it saw


def _exact_integers(line: bytes, value: Any) -> Any:
    """orjson's value of a line, or, when the line holds a run of 19 digits (perhaps an integer past
    64 bits, which orjson reads as a float), the standard library's, whose integers are exact: an id
    or a kept field of 2**70 stays 1180591620717411303424. orjson accepted the line, so it has no NaN
    or lone surrogate for this parser to let through; nested deeper than this parser recurses (orjson
    allows 1024 levels), orjson's value stays."""
    if not _LONG_DIGITS.search(line):
        return value
    try:
        return json.loads(line)
    except RecursionError:
        return value


def _what(value: Any) -> str:
    """A value's kind in words: `an integer`, `a list`..."""
    kinds = {bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "an object", bytes: "bytes"}
    return next((words for kind, words in kinds.items() if isinstance(value, kind)), f"a {type(value).__name__}")


def _snippet(data: bytes | str) -> str:
    text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


class CorpusFile:
    """One corpus file's records into a PartSink (see the module docstring)."""

    def __init__(self, config: IngestConfig, kind: str, name: str, file: str, dump: str | None, sink: PartSink) -> None:
        self.config, self.kind, self.name, self.file, self.dump, self.sink = config, kind, name, file, dump, sink
        self.position = "row" if kind == PARQUET else "line"
        self.fields = FieldSelection(config, sink.count)
        self.not_kept: set[str] = set()
        self.last_line = 0
        self.cut_line: tuple[int, int] | None = None  # (number, bytes) of a last line cut short by damage
        self.cut_paragraph: tuple[int, int] | None = None  # (first line, lines) of a last paragraph the damage ends

    # --- JSONL and plain text: lines of a (gzip) stream --------------------------------------------
    def read_lines(self, stream: GunzipReader) -> None:
        if stream.empty:
            self.sink.quarantine("empty_file", "the file has no bytes", offset=0)
            return
        lines = self._lines(stream)
        if self.kind == JSONL:
            for number, line in lines:
                self._jsonl_line(number, line)
        elif self.config.txt_document == "line":
            for number, line in lines:
                if not line.strip():
                    self.sink.drop("blank_line")
                elif (text := self._decode(line, number)) is not None:
                    self._emit(text, number, None, None, None)
        else:
            self._paragraphs(lines, stream)
        self._damage(stream)

    def _lines(self, stream: GunzipReader) -> Iterator[tuple[int, bytes]]:
        """(line number, bytes without the line end) of each line; a line past max_record_bytes is
        quarantined and skipped unread, a last line cut short by damage left to `_damage`."""
        reader = io.BufferedReader(stream, 1 << 20)
        limit = self.config.max_record_bytes
        number = 0
        while line := reader.readline(limit + 1):
            number += 1
            if number == 1 and line.startswith(_BOM):  # Windows tools start UTF-8 files with one
                line = line[len(_BOM) :]
            if not line.endswith(b"\n"):
                if len(line) > limit:
                    size = len(line)
                    while (more := reader.readline(1 << 20)) and not more.endswith(b"\n"):
                        size += len(more)
                    size += len(more)
                    self.sink.quarantine("record_too_large", f"line {number}: {size:,} bytes exceed max_record_bytes={limit}; skipped unread", offset=number)
                    self.last_line = number
                    continue
                if stream.damaged:
                    self.cut_line = (number, len(line))
                    return
            self.last_line = number
            yield number, line.rstrip(b"\n").removesuffix(b"\r")

    def _paragraphs(self, lines: Iterator[tuple[int, bytes]], stream: GunzipReader) -> None:
        """Blank-line-separated paragraphs, each a record numbered by its first line; the last one of
        a damaged stream may be cut short, and goes with the damage's entry."""
        limit = self.config.max_record_bytes
        block: list[bytes] = []
        first, size, skipping = 0, 0, False
        for number, line in itertools.chain(lines, [(0, b"")]):  # a blank line after the last ends its paragraph
            if not line.strip():
                if number == 0 and block and stream.damaged:
                    self.cut_paragraph = (first, len(block))
                elif block and (text := self._decode(b"\n".join(block), first)) is not None:
                    self._emit(text, first, None, None, None)
                block, size, skipping = [], 0, False
                continue
            if skipping:
                continue
            if not block:
                first = number
            block.append(line)
            size += len(line) + 1
            if size > limit:
                self.sink.quarantine("record_too_large", f"the paragraph at line {first} exceeds max_record_bytes={limit}; skipped unread", offset=first)
                block, skipping = [], True

    def _damage(self, stream: GunzipReader) -> None:
        cut = f"; its last line (line {self.cut_line[0]}, {self.cut_line[1]:,} bytes) cut short" if self.cut_line else ""
        if self.cut_paragraph:
            cut += f"; the paragraph at line {self.cut_paragraph[0]} ({self.cut_paragraph[1]} whole lines before the damage) left out with it"
        at = self.last_line + 1
        if stream.truncated:
            self.sink.quarantine("truncated_gzip", f"{stream.damaged}; {self.last_line} lines read before{cut}", offset=at)
        elif stream.corrupt:
            detail = f"{stream.corrupt}; {self.last_line} lines read before{cut}; the rest of the file is not read (JSON Lines and text are not resumed after damage)"
            self.sink.quarantine("corrupt_gzip", detail, offset=at)

    def _decode(self, data: bytes, number: int) -> str | None:
        """UTF-8 text of a line or paragraph: rare invalid bytes replaced and counted; many: quarantined (None)."""
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = data.decode("utf-8", errors="replace")
            bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
            if bad > self.config.max_bad_utf8_share * max(len(text), 1):
                detail = f"{self.position} {number}: {bad} invalid UTF-8 sequences in {len(data):,} bytes (the first at byte {exc.start})"
                self.sink.quarantine("bad_utf8", detail, offset=number)
                return None
            self.sink.count("utf8_repaired_docs")
            return text

    def _jsonl_line(self, number: int, line: bytes) -> None:
        if not line.strip():
            self.sink.drop("blank_line")
            return
        record = self._parse(line, number)
        if record is MISSING:
            return
        if not isinstance(record, dict):
            self.sink.quarantine("not_an_object", f"line {number}: {_what(record)}, not an object: {_snippet(line)}", offset=number)
            return
        self.record(record, number)

    def _parse(self, line: bytes, number: int) -> Any:
        """A line's JSON value; MISSING once quarantined (invalid_json, or bad_utf8 past the share)."""
        try:
            return _exact_integers(line, orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            error = exc
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:  # rare invalid bytes are replaced, then parsed; many quarantine the line
            text = self._decode(line, number)
            if text is None:
                return MISSING
            try:
                return _exact_integers(text.encode("utf-8"), orjson.loads(text))
            except orjson.JSONDecodeError as exc:
                error = exc
        where = _ORJSON_WHERE.sub(r" at column \1", str(error))
        self.sink.quarantine("invalid_json", f"line {number}: {where}: {_snippet(line)}", offset=number)
        return MISSING

    # --- Parquet: row groups in batches ---------------------------------------------------------
    def read_parquet(self, handle: BinaryIO) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(handle)
        except SourceReadError:
            raise
        except (pa.ArrowException, OSError, ValueError) as exc:
            empty = handle.seek(0, io.SEEK_END) == 0
            self.sink.quarantine(*(("empty_file", "the file has no bytes") if empty else ("invalid_parquet", f"not a readable Parquet file: {exc}")), offset=0)
            return
        names = parquet.schema_arrow.names
        read = self.fields.parquet_columns(names)
        not_kept = [n for n in names if n not in read]
        row = 0
        for group in range(parquet.num_row_groups):
            end = row + parquet.metadata.row_group(group).num_rows
            try:
                for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=read, use_threads=False):
                    values = {name: _values(batch.column(name)) for name in read}
                    for i in range(batch.num_rows):
                        self.record({name: values[name][i] for name in read}, row)
                        row += 1
                    for name in not_kept:
                        self._not_kept(name, batch.num_rows)
            except SourceReadError:
                raise
            except (pa.ArrowException, OSError, ValueError) as exc:
                detail = f"row group {group} (rows {row}..{end - 1}: {end - row} rows not read): {type(exc).__name__}: {exc}"
                self.sink.quarantine("invalid_parquet", detail, offset=row)
                row = end

    # --- one record (a JSONL line's object, a Parquet row) ----------------------------------------
    def record(self, record: dict[str, Any], number: int) -> None:
        where = f"{self.position} {number}"
        # Every row's, kept or not (a mistyped --text-field: the fields the rows do have). A Parquet
        # row holds only the columns read: the others are counted per batch.
        for name in self.fields.not_kept(record):
            self._not_kept(name, 1)
        text = field_value(record, self.config.text_field)
        if text is MISSING or text is None:
            self.sink.drop("no_text_field")
            return
        if isinstance(text, bytes):  # a Parquet binary column
            text = self._decode(text, number)
            if text is None:
                return
        elif not isinstance(text, str):
            detail = f"{where}: the text field {self.config.text_field!r} holds {_what(text)}, not a string"
            self.sink.quarantine("text_not_string", detail, offset=number)
            return
        user_id = field_value(record, self.config.id_field) if self.config.id_field else MISSING
        if user_id is MISSING and self.config.id_field not in (None, DEFAULT_ID_FIELD):
            self.sink.count("id_field_absent")  # a field named on purpose (not the default `id`, which many files lack): a mistyped --id-field shows
        if user_id is MISSING or user_id is None or user_id == "":
            user_id = None
        elif isinstance(user_id, int) and not isinstance(user_id, bool):
            user_id = str(user_id)
        elif not isinstance(user_id, str):
            detail = f"{where}: the id field {self.config.id_field!r} holds {_what(user_id)} ({_snippet(str(user_id))}): an id is a string or an integer"
            self.sink.quarantine("bad_id", detail, offset=number)
            return
        url = self._string(record, self.config.url_field, "url_not_string")
        when = self._string(record, self.config.date_field, "date_not_string")
        carried, absent = self.fields.carried(record)
        for name in absent:
            self.sink.count(f"keep_field_absent:{name[:64]}")
        self._emit(text, number, user_id, url, when, carried)

    def _string(self, record: dict[str, Any], path: str | None, counter: str) -> str | None:
        value = field_value(record, path) if path else None
        if value is MISSING or value is None or isinstance(value, str):
            return None if value is MISSING else value
        if isinstance(value, (datetime, date)):  # a Parquet timestamp or date column
            return value.isoformat()
        self.sink.count(counter)
        return None

    def _not_kept(self, name: str, rows: int) -> None:
        name = name[:64]
        if name not in self.not_kept and len(self.not_kept) >= _FIELD_NAMES_COUNTED:
            name = "(more)"
        self.not_kept.add(name)
        self.sink.count(f"field_not_kept:{name}", rows)

    def _emit(self, text: str, number: int, user_id: str | None, url: str | None, when: str | None, corpus_fields: str | None = None) -> None:
        text = normalize_text(text)
        if not text:
            self.sink.drop("empty_text")
            return
        if len(text) > self.config.max_text_chars:
            self.sink.drop("text_too_large")
            return
        which = f"id={user_id}" if user_id is not None else f"{self.position}={number}"
        row = {
            "id": document_id("\x1f".join((self.dump or "", self.name, which))),  # \x1f: in no label or file name
            "text": text,
            "url": url,
            "dump": self.dump,
            "warc_record_id": user_id,
            "warc_file": self.file,
            "warc_offset": number,
            "date": when,
            "source_format": self.kind,
            "content_type": "text/plain",
            "charset": "utf-8",
            "lang": None,
            "lang_score": None,
            "corpus_fields": corpus_fields,
        }
        if self.dump is None:  # no crawl-data/ path and no --dump: counted as WARC pages without one are
            self.sink.count("no_dump")
        self.sink.keep(row)


def _values(column: Any) -> list[Any]:
    """A Parquet column's values; a string column with invalid UTF-8 as bytes (decoded, or quarantined, per row)."""
    import pyarrow as pa

    try:
        return column.to_pylist()
    except UnicodeDecodeError:
        return column.cast(pa.large_binary()).to_pylist()
