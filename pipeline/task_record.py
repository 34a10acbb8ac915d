"""An output folder's record of what it is made from (`_tasks.json`), written before its first
task: a resume never mixes two runs' inputs or settings (runner.run_stage calls this).

A folder whose record differs is refused, naming what differs, unless nothing was written into
it yet (the attempt stopped at a mistake before any task finished): then the corrected command
takes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from crawlmill.files import AnyPath, as_path, atomic_write_json, list_files, open_binary, read_json, remove_tree

from .output_folder import DONE_DIR, STATS_FILE, SUCCESS_FILE, TASKS_FILE, WORK_DIR, folder_key, given_paths
from .relocation import align
from .stage import StageInputMismatch


def check_task_record(output_dir: AnyPath, wanted: dict[str, Any], resume_only: tuple[str, ...] = (), finished: bool = False) -> None:
    """Record what an output folder is made from (`_tasks.json`), or refuse a folder made from
    other inputs or settings, so a resume never mixes two runs. `finished` (it has `_SUCCESS`):
    a record that differs only in the `resume_only` settings (Stage.resume_only_settings) is the
    same output; nothing will be resumed, and the record stays as it was."""
    path = output_dir / TASKS_FILE
    wanted = read_json_roundtrip(wanted)
    if path.exists():
        recorded = read_json(path)
        # A folder moved or copied with the folders it reads: its paths read where they are now.
        found = align(recorded, wanted, _names(output_dir))
        if found == wanted:
            if recorded != wanted and not finished:
                atomic_write_json(path, wanted)  # resumed where it is now: its record says so
            return
        # A record of a version before inputs were recorded: what they were is unknown, so it is
        # compared without them (a finished folder stays as it is; a resumed one records them).
        target = {k: v for k, v in wanted.items() if k != INPUTS_MADE} if isinstance(found, dict) and INPUTS_MADE not in found else wanted
        if found == target or (finished and resume_only and _without(found, resume_only) == _without(target, resume_only)):
            if not finished:
                atomic_write_json(path, wanted)
            return
        if not _nothing_written(output_dir):
            if resume_only and _without(found, resume_only) == _without(target, resume_only):
                raise StageInputMismatch(
                    f"{output_dir} holds the unfinished output of a {found.get('stage')} run by an earlier version of crawlmill, "
                    f"whose intermediate files this version cannot resume ({_setting_changes(found, target)}; "
                    f"see {path}): pass --overwrite to compute it again, or finish it with that version"
                )
            raise StageInputMismatch(
                f"{output_dir} holds the output of an earlier {found.get('stage') if isinstance(found, dict) else 'unknown'} run with {_differences(align(recorded, wanted, _names(output_dir), most=True), wanted)} "
                f"(see {path}); choose another output folder, delete this one or pass --overwrite"
            )
        # An attempt that stopped before any task wrote a thing (a mistyped option, a missing
        # file): its record holds nothing back, so the corrected command takes the folder.
        remove_tree(output_dir / WORK_DIR)
    atomic_write_json(path, wanted)


INPUTS_MADE = "inputs_made"  # the record's key for input_records


def input_records(inputs: Sequence[str]) -> dict[str, str]:
    """For each finished stage folder among `inputs` (a config's paths: a folder, or a part file of
    one), a digest of its `_tasks.json` and `_stats.json`: what it was made from and what it gave.
    Kept in the record of the stage that reads it, so that an input folder made again since with
    other inputs or settings (`--only ingest --overwrite` on WET files instead of WARC) is noticed
    instead of its readers counting as done. An input remade the same way (deterministic: the same
    record and counts) leaves its readers valid."""
    found: dict[str, str] = {}
    for given in inputs:
        for candidate in given_paths(given):  # `en=out/dedup` names out/dedup
            folder = _folder_of(candidate)
            key = folder_key(folder)
            if key in found or not (as_path(folder) / SUCCESS_FILE).exists():
                continue
            digest = hashlib.sha256()
            for name in (TASKS_FILE, STATS_FILE):
                digest.update(read_bytes(as_path(folder) / name) + b"\0")
            found[key] = digest.hexdigest()[:16]
    return found


def inputs_made_again(folder: AnyPath) -> list[str]:
    """The input folders of a finished stage folder that were made again since it ran (their
    digest no longer the one its record holds): its counts are of inputs no longer there."""
    try:
        made = read_json(as_path(folder) / TASKS_FILE).get(INPUTS_MADE) or {}
    except (OSError, ValueError, AttributeError):  # no record, or not a stage's: nothing to compare
        return []
    if not isinstance(made, dict):  # a record edited by hand: nothing to compare
        return []
    return [key for key, digest in sorted(made.items()) if input_records([key]).get(folder_key(key), digest) != digest]


def _folder_of(given: str) -> str:
    """The folder an input names: itself, a part file's folder, a glob's folder before its first wildcard."""
    if any(c in given for c in "*?["):
        head = given[: min(given.index(c) for c in "*?[" if c in given)]
        return head.rsplit("/", 1)[0] if "/" in head else "."
    return str(as_path(given).parent) if given.endswith(".parquet") else given


def _names(folder: AnyPath) -> tuple[str, ...]:
    """A folder as its record's paths may name it: resolved (folder_key), and as given, absolute."""
    given = as_path(folder)
    return (folder_key(folder), str(given.absolute()) if isinstance(given, Path) else str(given))


def read_bytes(path: AnyPath) -> bytes:
    try:
        with open_binary(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return b""


def _without(record: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        return record
    return {**record, "settings": {k: v for k, v in record["settings"].items() if k not in keys}}


def _nothing_written(output_dir: AnyPath) -> bool:
    """Nothing in the folder but its record and `_work/`'s intermediates (no part, marker,
    quarantine entry, stats or any file a stage keeps): no task of it finished."""
    names = [str(p)[len(str(output_dir)):].lstrip("/") for p in list_files(output_dir, "**/*")]
    return TASKS_FILE in names and all(name == TASKS_FILE or name.startswith(f"{WORK_DIR}/") and f"/{DONE_DIR}/" not in f"/{name}" for name in names)


def _differences(found: Any, wanted: dict[str, Any]) -> str:
    """What differs between a folder's `_tasks.json` and this run's, in a few words: the settings
    by name (`partitions: 4 -> 8`), the inputs by count."""
    if not isinstance(found, dict):
        return "a record this version cannot read"
    said = []
    if found.get("stage") != wanted.get("stage"):
        said.append(f"another stage ({found.get('stage')})")
    old, new = found.get("settings"), wanted.get("settings")
    if old != new:
        said.append(f"other settings ({_setting_changes(found, wanted)})")
    if found.get(INPUTS_MADE) != wanted.get(INPUTS_MADE) and found.get("sources") == wanted.get("sources"):
        before, now = found.get(INPUTS_MADE) or {}, wanted.get(INPUTS_MADE) or {}
        remade = sorted(folder for folder in set(before) | set(now) if before.get(folder) != now.get(folder))
        said.append(f"an input made again since ({', '.join(remade[:2])}{' ...' if len(remade) > 2 else ''}: other inputs, settings or counts; --overwrite makes this folder again from it)")
    if found.get("sources") != wanted.get("sources"):
        before, now = found.get("sources") or [], wanted.get("sources") or []
        said.append(f"other inputs ({len(before)} then, {len(now)} now; {len(set(map(str, before)) ^ set(map(str, now)))} differ)")
    return ", ".join(said) or "another record"


def _setting_changes(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    """The settings that differ, by dotted name: `partitions: 4 -> 8; corpus.keep_fields: (none) -> ["title"]`."""
    old, new = found.get("settings"), wanted.get("settings")
    old, new = _flat(old if isinstance(old, dict) else {}), _flat(new if isinstance(new, dict) else {})
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "-") != new.get(k, "-"))
    shown = [f"{k}: {_short(old, k)} -> {_short(new, k)}" for k in keys[:3]]
    return "; ".join(shown) + (f"; {len(keys) - 3} more" if len(keys) > 3 else "")


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings by dotted name (`corpus.keep_fields`), so that a difference is named where it is."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _short(settings: dict[str, Any], key: str) -> str:
    if key not in settings:
        return "(none)"
    text = json.dumps(settings[key], ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def read_json_roundtrip(data: Any) -> Any:
    """`data` as it reads back from JSON (tuples become lists), so records compare equal."""
    return json.loads(json.dumps(data, ensure_ascii=False))
