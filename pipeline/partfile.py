"""The files of one output part that a stage writes beside its kept rows: a Parquet file written
under a temporary name and renamed into place on commit (ParquetTmpWriter), and the part's
quarantine (`_quarantine/part-NNNNN.parquet`: the records that could not be processed, with their
source, offset and error). pipeline/parts.py's PartSink holds both; a stage whose output is no
single PartSink (remix: one per group; pack: token files) keeps its own Quarantine.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, as_path, atomic_path, naming_write_errors, remove_file

from .schema import DOCUMENT_SCHEMA, QUARANTINE_SCHEMA

QUARANTINE_DIR = "_quarantine"
# Fixed writer settings: the same rows give byte-identical files.
PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True)
# The values every document has (DOCUMENT_SCHEMA's non-nullable columns: `id`, `text`). A foreign
# part's schema may declare them nullable, so each stage checks its rows against this, not the
# part's schema (Quarantine.incomplete).
REQUIRED_COLUMNS = tuple(f.name for f in DOCUMENT_SCHEMA if not f.nullable)


def part_name(index: int) -> str:
    return f"part-{index:05d}"


class ParquetTmpWriter:
    """A Parquet file opened lazily under a temporary name, renamed into place on commit. Its
    writes happen outside the `with atomic_path` block, so they name the final file themselves."""

    def __init__(self, final: AnyPath, schema: pa.Schema, always_create: bool) -> None:
        self.final, self.schema, self.always_create = final, schema, always_create
        self._file = contextlib.ExitStack()  # holds crawlmill.files.atomic_path(final) once opened
        self.writer: pq.ParquetWriter | None = None
        self._tmp: Any = None
        self.size: int | None = None  # bytes of the file once committed

    def _open(self) -> None:
        self._tmp = self._file.enter_context(atomic_path(self.final))
        with naming_write_errors(self.final, self._tmp):
            self.writer = pq.ParquetWriter(self._tmp, self.schema, **PARQUET_OPTIONS)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self.writer is None:
            self._open()
        with naming_write_errors(self.final, self._tmp):
            self.writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def commit(self) -> None:
        if self.writer is None and self.always_create:
            self._open()
        if self.writer is None:  # nothing to write: a file an earlier making of this part left is not this one's
            remove_file(self.final)
        if self.writer is not None:
            with naming_write_errors(self.final, self._tmp):
                self.writer.close()
            self.size = os.path.getsize(self._tmp)  # always local: uploaded as it is to a URL
            self._file.close()  # renames the temporary into place (its errors are named there)

    def abort(self) -> None:
        if self.writer is not None:
            # The file is thrown away: closing it may fail again (a full disk fails the footer too),
            # which must neither hide the first error nor keep the temporary from being deleted.
            with contextlib.suppress(Exception):
                self.writer.close()
        # Deletes the temporary (also one whose ParquetWriter failed to open); nothing once committed.
        self._file.__exit__(RuntimeError, RuntimeError("part aborted"), None)


def missing_value(row: dict[str, Any]) -> str | None:
    """The first of REQUIRED_COLUMNS whose value `row` lacks (None or absent), else None."""
    return next((name for name in REQUIRED_COLUMNS if row.get(name) is None), None)


class Quarantine:
    """One input part's quarantine entries, `_quarantine/<name or part-NNNNN>.parquet` (written if
    any). PartSink keeps one; a stage whose output is no single PartSink (remix: one per group; pack:
    token files) keeps its own and adds its `count` to the part's `quarantined` and `in`."""

    def __init__(self, output_dir: AnyPath, index: int, source: str, stage: str, batch_rows: int = 2048, name: str | None = None) -> None:
        self.source, self.stage, self.batch_rows, self.count = source, stage, batch_rows, 0
        final = as_path(output_dir) / QUARANTINE_DIR / f"{name or part_name(index)}.parquet"
        self._writer = ParquetTmpWriter(final, QUARANTINE_SCHEMA, always_create=False)
        self._buffer: list[dict[str, Any]] = []

    def add(self, error: str, detail: str, offset: int | None = None, record_id: str | None = None) -> None:
        self.count += 1
        self._buffer.append({"stage": self.stage, "source": self.source, "offset": offset, "record_id": record_id, "error": error, "detail": detail[:4000]})
        if len(self._buffer) >= self.batch_rows:
            self._writer.write(self._buffer)
            self._buffer = []

    def incomplete(self, row: dict[str, Any], offset: int) -> bool:
        """Quarantine a row without a value every document has (`no_id`, `no_text`: a foreign part's
        null, which no stage can score, label, tokenize or write); `offset`: its row in the part."""
        missing = missing_value(row)
        if missing is None:
            return False
        self.add(f"no_{missing}", f"row {offset}: its `{missing}` is null", offset, row.get("id"))
        return True

    def commit(self) -> None:
        self._writer.write(self._buffer)
        self._buffer = []
        self._writer.commit()

    def abort(self) -> None:
        self._writer.abort()

    def __enter__(self) -> "Quarantine":
        return self

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        self.commit() if kind is None else self.abort()  # a failed part leaves no entries behind
