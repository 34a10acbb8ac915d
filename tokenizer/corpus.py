"""Stream a tokenizer-training corpus from pipeline Parquet, JSONL or plain text, with a language mix.

An input is `PATH` or `LANG=PATH`:

- a pipeline output folder (Parquet parts + `_SUCCESS`; `text` and `lang` columns), or any folder or
  file of `*.parquet` with a `text` column;
- `*.jsonl` / `*.jsonl.gz`: one JSON object a line with `text` (and optionally `lang`); a file
  none of whose records has a `text` is an error naming the keys they have;
- anything else is plain UTF-8 text, read in blocks of lines (`.gz` is decompressed);
- a folder that is not a pipeline folder: every such file under it, recursively, in sorted order.

`LANG=` sets the language of everything in that input (e.g. `code=src/`); otherwise a row's `lang`
is used, and text without one is `und`. Memory is bounded by one batch, never the corpus.

Sampling to a target mix or a byte limit (`--mix en=0.5,zh=0.4,code=0.1`, shares of bytes;
`--max-bytes`) is sampling.py's: exact byte counts per language, deterministic by seed. Records that
cannot be read (bad JSON, no text) are counted by reason, never skipped silently; bad UTF-8 in text
files is replaced and counted.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pyarrow.compute as pc

from crawlmill.files import as_path, is_remote, is_url, list_files, open_binary, parquet_file

from ..pipeline.parts import input_parts
from ..pipeline.stage import StageInputError

TEXT_BLOCK_BYTES = 1 << 16  # plain text: lines are grouped into documents of about this size
PARQUET_BATCH_ROWS = 1024
UNDETERMINED = "und"


@dataclass(frozen=True)
class InputSpec:
    path: Any  # a local Path or a URL's UPath (crawlmill.files.as_path)
    lang: str | None = None

    @classmethod
    def parse(cls, spec: str) -> "InputSpec":
        lang, sep, path = spec.partition("=")
        if sep and lang and lang.replace("_", "").replace("-", "").isalnum() and not (not is_url(spec) and Path(spec).exists()):
            return cls(as_path(path), lang)
        return cls(as_path(spec))


@dataclass
class CorpusCounts:
    """Bytes and documents per language, documents without text (read, never trained on), and
    unreadable records per reason."""

    bytes: Counter = field(default_factory=Counter)
    documents: Counter = field(default_factory=Counter)
    empty: Counter = field(default_factory=Counter)
    bad_records: Counter = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def add_bad(self, reason: str, where: str) -> None:
        self.bad_records[reason] += 1
        if len(self.first_errors) < 10:
            self.first_errors.append(f"{where}: {reason}")

    def add_json(self, other: dict) -> None:
        """Add the counts of another CorpusCounts' `to_json()` (e.g. from a Ray task)."""
        self.bytes.update(other["bytes"])
        self.documents.update(other["documents"])
        self.empty.update(other.get("empty", {}))  # a task's result of a version before it was counted
        self.bad_records.update(other["bad_records"])
        self.first_errors.extend(other["first_errors"][: max(0, 10 - len(self.first_errors))])

    def to_json(self) -> dict:
        return {
            "bytes": dict(sorted(self.bytes.items())),
            "documents": dict(sorted(self.documents.items())),
            "empty": dict(sorted(self.empty.items())),
            "bad_records": dict(sorted(self.bad_records.items())),
            "first_errors": self.first_errors,
        }


def expand_files(spec: InputSpec) -> list[tuple[str, Path]]:
    """(kind, file) pairs of one input, in a deterministic order; kind is parquet, jsonl or text."""
    path = spec.path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "_SUCCESS").exists() or list_files(path, "part-*.parquet"):
            return [("parquet", as_path(p)) for p in input_parts(path)]
        # By the path as a string, local or in a store alike: pathlib orders part by part (`a/x` before
        # `a-b`), a store's listing as strings (`a-b` first), and the order is part of the sample.
        files = sorted((p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))), key=_path_text)
        return [(_kind(p), p) for p in files]
    return [(_kind(path), path)]


def _path_text(path: Any) -> str:
    return path.path if is_remote(path) else path.as_posix()


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "text"


def _open_text(path: Path):  # noqa: ANN202 - binary file object
    return gzip.open(open_binary(path), "rb") if path.name.endswith(".gz") else open_binary(path)


def iter_documents(spec: InputSpec, counts: CorpusCounts) -> Iterator[tuple[Path, list[str], list[str]]]:
    """(file, texts, langs) batches of one input; unreadable records go to `counts.bad_records`."""
    for kind, path in expand_files(spec):
        yield from iter_file_documents(kind, path, spec.lang, counts)


def iter_file_documents(kind: str, path: Path, lang: str | None, counts: CorpusCounts, start: int = 0, end: int | None = None) -> Iterator[tuple[Path, list[str], list[str]]]:
    """(file, texts, langs) batches of one file of `expand_files`; with `end`, of a part of it (the
    word count's chunks, sampling.plan_units): Parquet's row groups [start, end), the JSONL lines
    starting in bytes [start, end) of an uncompressed file."""
    if kind == "parquet":
        yield from _parquet_batches(path, lang, None if end is None else list(range(start, end)))
    elif kind == "jsonl":
        yield from _jsonl_batches(path, lang, counts, start, end)
    else:
        yield from _text_batches(path, lang or UNDETERMINED, counts)


def _parquet_batches(path: Path, lang: str | None, row_groups: list[int] | None = None) -> Iterator[tuple[Path, list[str], list[str]]]:
    parquet = parquet_file(path)
    names = parquet.schema_arrow.names
    if "text" not in names:
        raise StageInputError(f"{path}: no `text` column (columns: {', '.join(names)})")
    columns = ["text"] + (["lang"] if "lang" in names and lang is None else [])
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns, row_groups=row_groups):
        texts = pc.fill_null(batch.column("text"), "").to_pylist()
        if lang is None and "lang" in columns:
            langs = pc.fill_null(batch.column("lang"), UNDETERMINED).to_pylist()
        else:
            langs = [lang or UNDETERMINED] * len(texts)
        yield path, texts, langs


def _jsonl_batches(path: Path, lang: str | None, counts: CorpusCounts, start: int = 0, end: int | None = None) -> Iterator[tuple[Path, list[str], list[str]]]:
    """Records of a JSONL file, or (`end`) of the lines starting in bytes [start, end) of it. A range's
    unreadable records are named by the byte their line starts at (its line numbers are not known).
    A file none of whose records has a text is an error, said by its first range alone, which reads
    on through the file for a record with a text when it has none (the others never do)."""
    texts: list[str] = []
    langs: list[str] = []
    records, with_text, first = 0, 0, None  # JSON records read, those with a text, the first
    with _open_text(path) as handle:
        lines = enumerate(handle, 1) if end is None else _range_lines(handle, start, end)  # (line number or byte, line)
        for position, line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as error:
                counts.add_bad("bad_json", f"{_where(path, position, end)}: {error}")
                continue
            first = record if not records else first
            records += 1
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                counts.add_bad("no_text_field", _where(path, position, end))
                continue
            with_text += 1
            texts.append(text)
            langs.append(lang or str(record.get("lang") or UNDETERMINED))
            if len(texts) == PARQUET_BATCH_ROWS:
                yield path, texts, langs
                texts, langs = [], []
        if end is not None and not with_text and start == 0:
            found, more = _later_text(handle)  # the handle is past the range: the rest of the file
            if found:
                records = 0
            elif records or more:
                records += more
                first = first if first is not None else _first_record(path)
    if records and not with_text and (end is None or start == 0):
        # Records keyed otherwise (`content`, `body`): said as for a Parquet file without the column,
        # not as "no text in the inputs: nothing to read" once every input is read.
        keys = ", ".join(map(str, first)) if isinstance(first, dict) else f"none: it is a JSON {type(first).__name__}, not an object"
        raise StageInputError(f"{path}: none of its {records:,} records has a `text` string (the first record's keys: {keys}); "
                              "the tokenizer reads the `text` of each JSON object")  # fmt: skip
    if texts:
        yield path, texts, langs


def _where(path: Path, position: int, end: int | None) -> str:
    return f"{path}:{position}" if end is None else f"{path}: the line at byte {position:,}"


def _range_lines(handle: Any, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """The lines starting in bytes [start, end) (a line crossing `start` belongs to the range before)."""
    if start:
        handle.seek(start - 1)
        if handle.read(1) != b"\n":
            handle.readline()
    while (offset := handle.tell()) < end:
        line = handle.readline()
        if not line:
            break
        yield offset, line


def _later_text(handle: Any) -> tuple[bool, int]:
    """Whether a record with a `text` string follows in `handle`; the JSON records before it."""
    records = 0
    for line in handle:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            return True, records
        records += 1
    return False, records


def _first_record(path: Path) -> Any:
    """The file's first JSON record (for the error when its first range had none)."""
    with _open_text(path) as handle:
        for line in handle:
            if line.strip():
                try:
                    return json.loads(line)
                except ValueError:
                    continue
    return None


def _text_batches(path: Path, lang: str, counts: CorpusCounts) -> Iterator[tuple[Path, list[str], list[str]]]:
    block: list[bytes] = []
    size = offset = 0  # offset: the block's first byte in the file's text (after gunzip)
    batch: list[str] = []
    with _open_text(path) as handle:
        for line in handle:
            block.append(line)
            size += len(line)
            if size >= TEXT_BLOCK_BYTES:
                batch.append(decode_block(b"".join(block), path, counts, offset))
                block, offset, size = [], offset + size, 0
                if len(batch) == 64:
                    yield path, batch, [lang] * len(batch)
                    batch = []
    if block:
        batch.append(decode_block(b"".join(block), path, counts, offset))
    if batch:
        yield path, batch, [lang] * len(batch)


def decode_block(data: bytes, path: Path | str, counts: CorpusCounts, offset: int = 0) -> str:
    """UTF-8 text of a block of lines that starts at byte `offset` of the file's text; bad bytes are
    replaced and counted, the first named by its place in the file (not in the block)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        where = f"byte {offset + error.start:,}" if error.end - error.start == 1 else f"bytes {offset + error.start:,}-{offset + error.end - 1:,}"
        counts.add_bad("invalid_utf8_replaced", f"{path}: {where} of its text are not UTF-8 ({error.reason})")
        return data.decode("utf-8", "replace")
