"""Writing one output part of a stage: Parquet rows, drop reasons, quarantine, completion marker.

A stage turns each input unit (a WARC file, a Parquet part) into one output part. `PartSink`
receives that unit's outcome record by record and guarantees the stage framework's contract:

- every input record is counted once, as kept, dropped with a named reason, or quarantined;
- rows are buffered and written in bounded row groups (memory bounded by the batch);
- files are written under a temporary name and renamed when complete (crawlmill/files.py);
- `commit` returns the part's counts, which the runner writes as the part's marker
  `_parts/part-NNNNN.json` last: a part is finished iff its marker exists. On object stores (no
  atomic rename of folders) the marker is the commit: readers take the parts its markers name
  (`input_parts`), never a listing of Parquet files, and a marker whose part is gone is redone.
- the marker records the part file's size (`files`); a part whose size is not that one (damaged
  after it was written: our writer renames only whole files) is treated as missing: redone by a
  rerun of its stage, refused by a reader. A size, not a checksum: one listing checks it, where a
  checksum would read every part at every resume.

Output folder layout (shared by all stages)::

    part-00000.parquet              kept documents
    _quarantine/part-00000.parquet  records that could not be processed (source, offset, error)
    _dropped/part-00000.parquet     optional: dropped documents with their reason
    _parts/part-00000.json          the part's counts; written last, marks the part finished
    _stats.json, _SUCCESS           written by the stage runner when every part is finished
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.files import AnyPath, as_path, list_file_sizes, list_files, read_json, remove_file
from crawlmill.pathsafety import inside_folder

from .partfile import PARQUET_OPTIONS, QUARANTINE_DIR, ParquetTmpWriter, Quarantine, part_name

__all__ = ["PARQUET_OPTIONS", "QUARANTINE_DIR", "part_name"]  # the stages import them from here

PARTS_DIR = "_parts"
DROPPED_DIR = "_dropped"


def marker_path(output_dir: AnyPath, index: int) -> AnyPath:
    return as_path(output_dir) / PARTS_DIR / f"{part_name(index)}.json"


def marker_parts(marker: dict[str, Any], source: Any = "a part marker") -> list[str]:
    """File names of the parts a marker commits: `part-NNNNN.parquet`, or one per group of a remix
    marker (`part-<group>-NNNNN.parquet`). A marker is data: an index that is no number or a group
    that is a path (`../x`, `/x`, a URL) is an error naming the marker file `source`."""
    index = marker["index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(f"{source}: index {index!r} is refused: a part marker's index is a number")
    if "groups" in marker:
        return [f"part-{inside_folder(group, source, f'groups[{i}]')}-{index:05d}.parquet" for i, group in enumerate(marker["groups"])]
    return [f"{part_name(index)}.parquet"]


def committed_parts(stage_dir: AnyPath) -> tuple[list[AnyPath], list[AnyPath]]:
    """(the parts named by the folder's markers, in name order; the markers whose parts are missing
    or not the size the marker records). A part without a marker (a killed run's, or a stray file)
    is not among them. Markers without sizes (older runs', commit_folder's) are checked for presence only."""
    stage_dir = as_path(stage_dir)
    present = {p.name: (p, size) for p, size in list_file_sizes(stage_dir, "part-*.parquet")}
    parts, orphans = [], []
    for marker in list_files(stage_dir / PARTS_DIR, "part-*.json"):
        data = read_json(marker)
        names, sizes = marker_parts(data, marker), data.get("files")
        sizes = sizes if isinstance(sizes, dict) else {}
        if all(name in present and sizes.get(name, present[name][1]) == present[name][1] for name in names):
            parts += [present[name][0] for name in names]
        else:
            orphans.append(marker)
    return sorted(parts, key=lambda p: p.name), orphans


def redo_orphan_markers(stage_dir: AnyPath) -> None:
    """Delete markers whose parts are gone or damaged, so that the runner makes those parts again."""
    for marker in committed_parts(stage_dir)[1]:
        remove_file(marker)


def commit_folder(folder: AnyPath) -> None:
    """Mark a folder of `part-NNNNN.parquet` files made outside a stage (test and benchmark corpora)
    as a finished stage output: a marker per part, then `_SUCCESS`."""
    from crawlmill.files import atomic_write_json, atomic_write_text

    folder = as_path(folder)
    for part in list_files(folder, "part-*.parquet"):
        index = int(part.name.removesuffix(".parquet").rsplit("-", 1)[1])
        atomic_write_json(folder / PARTS_DIR / f"{part_name(index)}.json", {"index": index, "source": part.name})
    atomic_write_text(folder / "_SUCCESS", "")


INGEST_FIRST = "ingest them first: crawlmill ingest FILES --output DIR"


def input_parts(stage_dir: str | AnyPath) -> list[str]:
    """The Parquet parts of a finished stage output folder, in order: those its markers name; an
    error if it is unfinished, a marker's part is missing, or it is no stage's folder."""
    stage_dir = as_path(stage_dir)
    if not (stage_dir / "_SUCCESS").exists():
        if not stage_dir.exists():
            raise FileNotFoundError(f"{stage_dir}: no such stage output folder")
        if stage_dir.is_file():
            raise FileNotFoundError(f"{stage_dir} is a file, not a stage output folder: give the folder that holds it")
        parquet = list_files(stage_dir, "*.parquet")
        # No trace of a stage (its record, markers or work), yet Parquet files: a user's own data,
        # which no rerun of a stage finishes.
        if parquet and not any((stage_dir / name).exists() for name in ("_tasks.json", PARTS_DIR, "_work")):
            raise FileNotFoundError(f"{stage_dir} has no _SUCCESS, no {PARTS_DIR}/ markers and no _tasks.json: it is not a crawlmill stage output "
                                    f"folder, and its {len(parquet)} Parquet file(s) were not written by a crawlmill stage; {INGEST_FIRST}")  # fmt: skip
        raise FileNotFoundError(f"{stage_dir} has no _SUCCESS: its stage has not finished (rerun it first)")
    parts, orphans = committed_parts(stage_dir)
    if orphans:
        raise FileNotFoundError(f"{stage_dir}: the parts of {orphans[0].name} are missing or not the size it records (delete _SUCCESS and rerun the stage)")
    if not parts and not list_files(stage_dir / PARTS_DIR, "part-*.json"):
        # Finished, yet not one part listed: read as it is, it gave 0 documents and exit status 0. A
        # folder with markers may hold a stray part none lists (a copy, a killed run's): never read.
        unlisted = [p.name for p in list_files(stage_dir, "part-*.parquet")]
        if unlisted:
            shown = ", ".join(unlisted[:3]) + (", ..." if len(unlisted) > 3 else "")
            raise FileNotFoundError(
                f"{stage_dir}: none of its {len(unlisted)} part files ({shown}) is listed by a marker in {PARTS_DIR}/, where a stage records "
                f"each part it finished: the folder was not written by a crawlmill stage, or its markers are lost. Parquet files of your own: "
                f"{INGEST_FIRST}; a stage's output: delete its _SUCCESS and rerun that stage"
            )
    return [str(p) for p in parts]


def parts_of_dump(parts: list[str], dump: str) -> list[str]:
    """The parts whose documents are of `dump` (read from the `dump` column's Parquet statistics,
    not the rows). A per-dump stage after a joint one (quality after dedup) takes these; a part
    that mixes `dump` with other dumps is an error, an empty part belongs to no dump."""
    from crawlmill.files import parquet_file

    mine = []
    for part in parts:
        meta = parquet_file(part).metadata
        column = meta.schema.to_arrow_schema().get_field_index("dump")
        values: set[Any] = set()
        for group in range(meta.num_row_groups):
            stats = meta.row_group(group).column(column).statistics if column >= 0 else None
            if meta.row_group(group).num_rows and (stats is None or not stats.has_min_max):
                values.update(pq.read_table(part, columns=["dump"])["dump"].to_pylist())  # no statistics: the column
                break
            if meta.row_group(group).num_rows:
                values.update({stats.min, stats.max})
        if dump in values and len(values) > 1:
            raise ValueError(f"{part}: holds documents of {dump} and of other dumps; a per-dump stage needs parts of one dump")
        if values == {dump}:
            mine.append(part)
    return mine


@dataclass
class PartStats:
    """Counts of one part. `records_in == kept + sum(dropped) + quarantined` always holds."""

    index: int
    source: str
    records_in: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    quarantined: int = 0
    counters: Counter = field(default_factory=Counter)  # stage-specific extra figures
    files: dict[str, int] = field(default_factory=dict)  # the part file's name -> its size in bytes
    source_bytes: int | None = None  # the input file's size as the part was made (ingest/changed.py)

    def to_json(self) -> dict[str, Any]:
        data = {
            "index": self.index,
            "source": self.source,
            "in": self.records_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "quarantined": self.quarantined,
            "counters": dict(sorted(self.counters.items())),
        }
        if self.files:  # a PartSink's part; not in the counts a stage makes itself
            data["files"] = dict(sorted(self.files.items()))
        if self.source_bytes is not None:
            data["source_bytes"] = self.source_bytes
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PartStats":
        return cls(
            index=data["index"],
            source=data["source"],
            records_in=data["in"],
            kept=data["kept"],
            dropped=Counter(data["dropped"]),
            quarantined=data["quarantined"],
            counters=Counter(data["counters"]),
            files=dict(data.get("files", {})),
            source_bytes=data.get("source_bytes"),
        )


class PartSink:
    """Receives one part's records; see the module docstring for the guarantees."""

    def __init__(
        self,
        output_dir: AnyPath,
        index: int,
        source: str,
        stage: str,
        schema: pa.Schema,
        batch_rows: int = 2048,
        batch_bytes: int = 32 << 20,
        keep_dropped: bool = False,
        name: str | None = None,
    ) -> None:
        self.output_dir, self.stage = as_path(output_dir), stage
        self.stats = PartStats(index=index, source=source)
        self.batch_rows, self.batch_bytes = batch_rows, batch_bytes
        # A stage that writes several parts per input unit (remix: one per group) names each.
        self._quarantine = Quarantine(self.output_dir, index, source, stage, batch_rows, name=name)
        name = f"{name or part_name(index)}.parquet"
        self._kept = ParquetTmpWriter(self.output_dir / name, schema, always_create=True)
        drop_schema = schema.append(pa.field("drop_reason", pa.string()))
        self._dropped = (
            ParquetTmpWriter(self.output_dir / DROPPED_DIR / name, drop_schema, always_create=False)
            if keep_dropped
            else None
        )
        self._extra: dict[str, ParquetTmpWriter] = {}
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._dropped_buffer: list[dict[str, Any]] = []

    # Outcomes of one input record: exactly one of these per record.
    def keep(self, row: dict[str, Any]) -> None:
        self.stats.records_in += 1
        self.stats.kept += 1
        self._buffer.append(row)
        self._buffer_bytes += len(row.get("text") or "")
        if len(self._buffer) >= self.batch_rows or self._buffer_bytes >= self.batch_bytes:
            self._flush()

    def drop(self, reason: str, row: dict[str, Any] | None = None) -> None:
        self.stats.records_in += 1
        self.stats.dropped[reason] += 1
        if self._dropped is not None and row is not None:
            self._dropped_buffer.append({**row, "drop_reason": reason})
            if len(self._dropped_buffer) >= self.batch_rows:
                self._dropped.write(self._dropped_buffer)
                self._dropped_buffer = []

    def quarantine(
        self, error: str, detail: str, offset: int | None = None, record_id: str | None = None
    ) -> None:
        self.stats.records_in += 1
        self.stats.quarantined += 1
        self._quarantine.add(error, detail, offset, record_id)

    def quarantine_incomplete(self, row: dict[str, Any], offset: int) -> bool:
        """Quarantine a row without a value every document has (`no_id`, `no_text`: a foreign
        part's null; Quarantine.incomplete); False if it has them all."""
        if not self._quarantine.incomplete(row, offset):
            return False
        self.stats.records_in += 1
        self.stats.quarantined += 1
        return True

    def write_extra(self, folder: str, schema: pa.Schema, rows: list[dict[str, Any]]) -> None:
        """Rows of a stage-specific side output, `<folder>/part-NNNNN.parquet`, committed with the part."""
        if folder not in self._extra:
            final = self.output_dir / folder / f"{part_name(self.stats.index)}.parquet"
            self._extra[folder] = ParquetTmpWriter(final, schema, always_create=True)
        self._extra[folder].write(rows)

    def count(self, counter: str, n: int = 1) -> None:
        """A stage-specific figure (bytes read, charset fallbacks...), reported in `_stats.json`."""
        self.stats.counters[counter] += n

    def _flush(self) -> None:
        self._kept.write(self._buffer)
        self._buffer, self._buffer_bytes = [], 0

    def commit(self) -> PartStats:
        """Write remaining rows and rename every file into place; the caller records the counts."""
        s = self.stats
        accounted = s.kept + sum(s.dropped.values()) + s.quarantined
        if accounted != s.records_in:  # a bug in the stage, never bad input
            raise AssertionError(f"{s.source}: {s.records_in} records in, {accounted} accounted for")
        self._flush()
        if self._dropped is not None:
            self._dropped.write(self._dropped_buffer)
            self._dropped.commit()
        self._quarantine.commit()
        for writer in self._extra.values():
            writer.commit()
        self._kept.commit()
        s.files = {self._kept.final.name: self._kept.size}
        return s

    def abort(self) -> None:
        for writer in (self._kept, self._quarantine, self._dropped, *self._extra.values()):
            if writer is not None:
                writer.abort()
