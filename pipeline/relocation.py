"""A stage folder moved or copied together with the folders it reads: its record read where it is now.

A folder's record (`_tasks.json`) names its inputs by path: their files (`sources`), the stage
folders it read (`inputs_made`) and settings that are paths (dedup's index). It also names the
folder it was written in (`output`), so that when the tree holding both was moved or copied (`mv
out /data/out`, `aws s3 sync s3://a/out s3://b/out`, a cluster mounting the disk elsewhere) every
path under the tree's old root is read as under its new one: the moved output resumes, and its
finished stages stay done. The roots are what is left of the recorded and the present folder once
their common last names are taken off (`/tmp/a/out/filter` now `/data/out/filter`: `/tmp/a` is now
`/data`). An input outside the moved tree (the WARC files the crawl was read from) keeps its path,
so the record of a folder moved without them still differs, as it should.

A record written before `output` was recorded is read as it is (such a folder resumes only where
it was made).
"""

from __future__ import annotations

from typing import Any

OUTPUT_KEY = "output"


def moved_roots(recorded: str, current: str) -> tuple[str, str] | None:
    """(old root, new root) of a folder recorded at `recorded` and found at `current`; None when
    they are the same. Both are `output_folder.folder_key` names (resolved paths, folded URLs)."""
    if recorded == current:
        return None
    old, new = recorded.rstrip("/").split("/"), current.rstrip("/").split("/")
    common = 0
    while common < min(len(old), len(new)) - 1 and old[-1 - common] == new[-1 - common]:
        common += 1
    return "/".join(old[: len(old) - common]), "/".join(new[: len(new) - common])


def relocate(value: Any, old: str, new: str) -> Any:
    """`value` (a record, or any part of one) with every path under `old` moved under `new`:
    strings, list items and dict keys alike."""
    if isinstance(value, str):
        if value == old or value.startswith(old + "/"):
            return new + value[len(old) :]
        return value
    if isinstance(value, list):
        return [relocate(v, old, new) for v in value]
    if isinstance(value, dict):
        return {relocate(k, old, new): relocate(v, old, new) for k, v in value.items()}
    return value


def relocated_record(record: Any, folder_key: str) -> Any:
    """A folder's record with its paths as they are now that the folder is at `folder_key`: the
    record as it is when it was written there (or names no folder: an earlier version's)."""
    if not isinstance(record, dict) or not isinstance(record.get(OUTPUT_KEY), str):
        return record
    roots = moved_roots(record[OUTPUT_KEY], folder_key)
    return record if roots is None else relocate(record, *roots)
