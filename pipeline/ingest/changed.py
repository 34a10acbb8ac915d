"""Input files replaced since ingest read them: their parts are made again.

A part is made from its file as it was: its marker (`_parts/part-NNNNN.json`) records the file's
size, `source_bytes`. A file replaced since under the same name (downloaded again after a transfer
cut it short, which ingest quarantined as `truncated_gzip`) has another size; a rerun of the same
command makes its part again, in a finished folder too (whose `_SUCCESS` goes first, so that a
run killed in between leaves an unfinished folder, never a finished one short of a part). The
stages that read the folder then find it made again (task_record.inputs_made_again) and say so.
Markers written before `source_bytes` was recorded are not compared, nor are files read over
HTTP (no listing to take sizes from; a request per file at every rerun would be 90,000 for a dump).
Run by the ingest stage (stage.py) on the driver: one listing per input folder for files in an
object store, a stat each for local ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from crawlmill.files import AnyPath, as_path, file_size, is_remote, list_file_sizes, read_json, remove_file

from ..output_folder import SUCCESS_FILE
from ..parts import PARTS_DIR, part_name


@dataclass(frozen=True)
class ChangedSource:
    index: int
    source: str
    then: int  # bytes when its part was made
    now: int

    def describe(self) -> str:
        return f"{self.source} ({self.then:,} bytes then, {self.now:,} now)"


def source_size(source: str) -> int | None:
    """The size of an input file as a task opens it (None where it cannot be had, or is not
    compared: a file read over HTTP)."""
    if source.startswith(("http://", "https://")):
        return None
    try:
        return file_size(source)
    except (OSError, ValueError):
        return None


def _current_sizes(sources: list[str]) -> dict[str, int]:
    """Sizes of the input files that exist: a stat each locally, one listing per folder in a store."""
    sizes: dict[str, int] = {}
    folders: dict[str, list[str]] = {}
    for source in sources:
        if source.startswith(("http://", "https://")):  # no listing (Common Crawl's data.commoncrawl.org): not compared
            continue
        if is_remote(as_path(source)):
            folders.setdefault(str(as_path(source).parent), []).append(source)
            continue
        try:
            sizes[source] = os.stat(source).st_size
        except OSError:  # gone or unreadable: the task says so when it runs
            continue
    for folder, names in folders.items():
        listed = {str(path): size for path, size in list_file_sizes(folder)}
        sizes |= {name: listed[str(as_path(name))] for name in names if str(as_path(name)) in listed}
    return sizes


def changed_sources(output: AnyPath, files: list[str]) -> list[ChangedSource]:
    """The parts of `output` whose input file (files[index]) has another size than it had."""
    markers: dict[int, dict[str, Any]] = {}
    for index, source in enumerate(files):
        path = as_path(output) / PARTS_DIR / f"{part_name(index)}.json"
        try:
            data = read_json(path)
        except (OSError, ValueError):  # no marker (not made yet), or a damaged one: the runner's to judge
            continue
        if isinstance(data, dict) and isinstance(data.get("source_bytes"), int) and data.get("source") == source:
            markers[index] = data
    if not markers:
        return []
    sizes = _current_sizes([files[i] for i in markers])
    return [
        ChangedSource(i, files[i], data["source_bytes"], sizes[files[i]])
        for i, data in sorted(markers.items())
        if files[i] in sizes and sizes[files[i]] != data["source_bytes"]
    ]


def redo_changed(output: AnyPath, changed: list[ChangedSource]) -> None:
    """Make the changed files' parts again: `_SUCCESS` first (a finished folder becomes unfinished),
    then their markers."""
    if not changed:
        return
    remove_file(as_path(output) / SUCCESS_FILE)
    for item in changed:
        remove_file(as_path(output) / PARTS_DIR / f"{part_name(item.index)}.json")


def report_line(changed: list[ChangedSource]) -> str:
    shown = "; ".join(item.describe() for item in changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
    return f"{len(changed)} input file(s) changed since they were ingested, their parts made again: {shown}"
