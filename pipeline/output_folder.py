"""What a stage or a training run may write into, and what --overwrite may delete.

- A stage's output folder is new, empty or its own earlier output (`STAGE_MARKERS` in it): a stage
  does not mix its parts into someone's folder (`check_output_folder`).
- --overwrite deletes only such a folder, and only when it holds nothing a stage never writes
  (`OWN_NAMES`): a user's file beside the parts stops it (`reset_output`).
- An output folder that is, holds or lies inside one of the stage's inputs (its config's path
  fields, and the files and folders they resolved to) is refused: writing there mixes output into
  what is read, and --overwrite would delete the input (`check_output_not_input`). Local paths are
  compared resolved (symbolic links followed), URLs normalised.

The runner (runner.py) checks all this after a stage's inputs resolved and before it writes or
deletes anything; `crawlmill run` checks every stage folder before its first stage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import os
import posixpath
import sys
from typing import TYPE_CHECKING, Any, Sequence

from crawlmill.files import TMP_MARK, AnyPath, as_path, fs_and_path, is_remote, is_store_root, is_url, list_files, make_dirs, naming_store_errors, remove_tree

from .ingest.config import DUMP_ID
from .parts import PARTS_DIR

if TYPE_CHECKING:
    from pathlib import Path

    from .stage import Stage

WORK_DIR = "_work"
DONE_DIR = "_done"
TASKS_FILE = "_tasks.json"
STATS_FILE = "_stats.json"
SUCCESS_FILE = "_SUCCESS"
# What makes a folder a stage's output: every stage writes `_tasks.json` before anything else.
STAGE_MARKERS = (TASKS_FILE, SUCCESS_FILE, STATS_FILE, PARTS_DIR, WORK_DIR)
# What makes a folder a training run's (`crawlmill train --output`; training/runlog.py, checkpoint.py).
RUN_MARKERS = ("run.json", "log.jsonl", "checkpoints")
# Every name a stage (or a training run) writes at the top of its output folder, as fnmatch
# patterns: anything else there is someone else's, and --overwrite refuses to delete it. The "_"
# names one by one, not "_*": a user's `_notes/` beside the parts is theirs too.
# (tests/pipeline/test_output_folder.py checks these against the constants of the modules that write them.)
OWN_NAMES = (
    TASKS_FILE, SUCCESS_FILE, STATS_FILE, PARTS_DIR, WORK_DIR,  # every stage (runner.py, parts.py)
    "_quarantine", "_dropped",  # a part stage's rejects (partfile.py QUARANTINE_DIR, parts.py DROPPED_DIR)
    "_report", "_index",  # dedup's report (dedup/report.py REPORT_DIR); the dumps' dedup index (dumps.py INDEX_FOLDER)
    "_model", "_quality.json",  # quality: a model trained in the run, its summary (quality/stage.py MODEL_DIR, SUMMARY)
    "_run.json", "_dumps.json",  # a run's output_dir: its summary (accounting.py RUN_FILE), appended dumps (dumps.py STATE_FILE)
    f"{TMP_MARK}*", "part-*.parquet",  # temporaries; parts
    ".nfs*", ".DS_Store", ".ranks-see-*",  # NFS's files deleted while open, Finder's, training's shared-folder probe (training/sharing.py)
    "_duplicates", "duplicates",  # dedup (dedup/stage.py DUPLICATES_DIR; LEGACY_DUPLICATES_DIR: before 2026-12-07)
    "_mixture.json", "_mixture.png",  # remix (remix/layout.py MIXTURE_FILE, MIXTURE_PLOT)
    "mixture.json", "mixture.png",  # remix before its files took "_" names: its old folders stay crawlmill's to --overwrite
    "manifest.json", "domains.parquet", "*.bin", "*.idx", "*.docs.parquet", "blend.json",  # pack (and appended dumps' blend)
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "crawlmill.json", "tokenizer_metadata.json", "train_report.json",
    "quality_model.json", "*.train.txt",  # quality train (model*.bin above)
    *RUN_MARKERS, "tensorboard", "profile", "data_cache", "ray_train", ".resume-*", "tokenizer",  # a training run (an imported one: tokenizer/)
)  # fmt: skip


class OutputFolderRefused(ValueError):
    """The output folder cannot be written (or deleted) safely: it is or holds an input, or holds
    files crawlmill did not write. Exit status 2 in the CLI, before anything is written or deleted."""


def reset_output(output_dir: str | Path, markers: Sequence[str] = STAGE_MARKERS, what: str = "stage output folder") -> None:
    """Delete an output folder (the CLI's --overwrite), once `check_output_folder` allows it: never
    a folder crawlmill did not write, nor one that holds files it never writes."""
    check_output_folder(output_dir, overwrite=True, markers=markers, what=what)
    delete_output(output_dir)


def delete_output(output_dir: str | AnyPath) -> None:
    """Delete an output folder in an order that a kill part way cannot turn into a resume of the
    old output: `_SUCCESS` and the finished-task markers first, the record (`_tasks.json`) last.
    Until the end the folder still names the run it holds, so a run with other settings is
    refused; a run with the same ones finds no markers and redoes every task. (Deleted at once,
    the record could go before the markers, and a run with other settings took the old parts as
    its own finished tasks.)"""
    folder = as_path(output_dir)
    names = folder_names(folder) or []
    first = [name for name in (SUCCESS_FILE, PARTS_DIR, WORK_DIR) if name in names]
    for name in [*first, *(n for n in names if n not in first and n != TASKS_FILE)]:
        _remove(folder / name)
    remove_tree(folder)


def overwrite_folder(output: AnyPath) -> None:
    """--overwrite's deletion of a stage folder that `check_output_folder` allowed: a linked folder
    keeps its link (rmtree would keep the link's folder, silently) and is emptied; a bucket stays,
    emptied. OutputFolderRefused when something could not be deleted (no permission)."""
    linked = not is_remote(output) and os.path.islink(output)
    target = as_path(os.path.realpath(output)) if linked else as_path(output)
    if folder_names(target):
        print(f"--overwrite: deleting the earlier output in {output}", file=sys.stderr, flush=True)
    delete_output(target)
    if list_files(target, "**/*") if is_store_root(target) else target.exists():
        raise OutputFolderRefused(f"--overwrite: {output} could not be deleted; delete it yourself or choose another output folder")
    if linked:
        make_dirs(target)  # the link keeps pointing at a folder


def _remove(path: AnyPath) -> None:
    """A file or a folder, local or in a store (whose recursive delete takes either)."""
    if is_remote(path) or path.is_dir():
        remove_tree(path)
    else:
        with contextlib.suppress(OSError):  # as remove_tree: the runner's check after the deletion says what stayed
            path.unlink()


def folder_names(folder: AnyPath) -> list[str] | None:
    """The names at the top of `folder` (a path or URL), sorted, crawlmill's temporaries left out;
    None when there is no such folder. An OutputFolderRefused for a file."""
    folder = as_path(folder)
    if is_remote(folder):
        fs, root = fs_and_path(folder)
        root = root.rstrip("/")
        with naming_store_errors(folder):  # no credentials, a refusal ("Forbidden"): the CLI's error names the folder
            if fs.isfile(root):
                raise OutputFolderRefused(f"{folder} is a file, not a folder: choose another output folder")
            try:
                listed = fs.ls(root, detail=False)
            except FileNotFoundError:
                return None
        fulls = [str(name).rstrip("/") for name in listed]
        names = [full.rsplit("/", 1)[-1] for full in fulls if full and full != root]  # some stores list the folder itself
    else:
        if not folder.exists():
            return None
        if not folder.is_dir():
            raise OutputFolderRefused(f"{folder} is a file, not a folder: choose another output folder")
        names = os.listdir(folder)
    return sorted(name for name in set(names) if not name.startswith(TMP_MARK))


def check_output_folder(
    output_dir: str | AnyPath, overwrite: bool = False, markers: Sequence[str] = STAGE_MARKERS, what: str = "stage output folder",
) -> None:
    """Refuse (OutputFolderRefused) an existing folder that is not empty and holds none of
    `markers` (crawlmill did not write it: a stage does not mix its parts into someone's folder,
    and --overwrite does not delete it), and with `overwrite` one that also holds a name no stage
    writes (`OWN_NAMES`), which the deletion would take with it. A new or empty folder is fine."""
    output = as_path(output_dir)
    with naming_store_errors(output):  # often the run's first request to the store: its errors name the folder
        if not overwrite and (output / TASKS_FILE).exists():  # a stage's own folder, resumed: no listing needed
            return
    names = folder_names(output)
    if not names:
        return
    if not set(names) & set(markers):
        listed = ", ".join(f"{m}/" if m in (PARTS_DIR, WORK_DIR, "checkpoints") else m for m in markers)
        action = "--overwrite deletes only a folder crawlmill wrote" if overwrite else "crawlmill writes only into a new or empty folder, or resumes its own output"
        raise OutputFolderRefused(
            f"{output} is not empty and is not a crawlmill {what} (none of {listed} in it): {action}; choose another output folder"
        )
    if overwrite:
        foreign = [name for name in names if not any(fnmatch.fnmatchcase(name, pattern) for pattern in OWN_NAMES)]
        dumps = [name for name in foreign if DUMP_ID.match(name)]
        if dumps:  # a joint run's folder above the folders of dumps appended after it (dumps.py)
            raise OutputFolderRefused(
                f"{output} holds the output of dumps appended after the joint run ({', '.join(dumps)}): --overwrite would "
                "delete them, which the output's _dumps.json and shards/blend.json still name; recompute the joint run "
                "into another output_dir instead"
            )
        if foreign:
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise OutputFolderRefused(
                f"{output} holds files crawlmill never writes ({', '.join(foreign[:5])}{more}): --overwrite would delete them "
                "with the earlier output; move them elsewhere, or choose another output folder"
            )


def stage_inputs(stage: Stage, sources: Sequence[str] = ()) -> list[str]:
    """What `stage` reads: every path field of its config (a dataclass's fields with "path"
    metadata, nested ones too: inputs as given, models, tokenizers, a dedup index) except the
    `output` it writes, then its sources (the files, folders or URLs those resolved to)."""
    found = config_paths(stage.config) if dataclasses.is_dataclass(stage.config) and not isinstance(stage.config, type) else []
    return found + [str(source) for source in sources]


def config_paths(config: Any) -> list[str]:
    """The values of a config dataclass's path fields (pipeline/config.py's "path" metadata), at any depth."""
    paths: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            paths += config_paths(value)
        elif f.metadata.get("path") and f.name != "output":
            paths += [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, str) and v]
    return paths


def folder_key(path: str | AnyPath) -> str:
    """A folder as every run names it (`_location`): for records and locks."""
    return _location(str(path), {})


def _location(path: str, real_dirs: dict[str, str]) -> str:
    """A comparable name of a path or URL: the resolved local path (symbolic links followed), or the
    URL with its scheme lower-case and `//`, `.` and `..` of its path folded."""
    text = str(path)
    if is_url(text):
        scheme, _, rest = text.partition("://")
        rest = rest.split("?", 1)[0].split("#", 1)[0]
        return f"{scheme.lower()}://{posixpath.normpath('/' + rest).lstrip('/')}".rstrip("/")
    local = str(as_path(text))
    head, tail = os.path.split(os.path.join(os.getcwd(), os.path.expanduser(local)))
    if tail in ("", ".", "..") or os.path.islink(os.path.join(head, tail)):
        return os.path.realpath(local)
    if head not in real_dirs:  # the parts of a folder share it: one resolution, not one per part
        real_dirs[head] = os.path.realpath(head)
    return os.path.join(real_dirs[head], tail)


def given_paths(text: str) -> list[str]:
    """A path as given, and for a `LANG=PATH` input (pipeline/config.py's "spec" paths) its PATH too."""
    lang, sep, path = text.partition("=")
    if sep and path and lang.replace("_", "").replace("-", "").isalnum():
        return [text, path]
    return [text]


def check_output_not_input(output_dir: str | AnyPath, inputs: Sequence[str], stage: str, inside_ok: bool = False, own: Sequence[str] = ()) -> None:
    """Refuse (OutputFolderRefused) an output folder that is one of `inputs`, holds one or lies inside
    one: writing there mixes output into what is read, and --overwrite would delete the input.
    `inside_ok`: a stage whose folder search cannot take its own output (ingest reads only WARC/WET
    files) may write inside an input folder; deleting that output deletes no input. `own`: inputs
    the stage also writes (dedup's index, `Stage.state_fields`), which its output folder may hold:
    they are part of its output, and its parts are never read as them."""
    real_dirs: dict[str, str] = {}
    output = _location(str(output_dir), real_dirs)  # str of a Path or UPath: the path or the URL
    for given in inputs:
        for candidate in given_paths(str(given)):
            where = _location(candidate, real_dirs)
            if where == output:
                relation = "is"
            elif where.startswith(output.rstrip("/") + "/"):
                if given in own:
                    continue
                relation = "holds"
            elif output.startswith(where.rstrip("/") + "/") and not inside_ok:
                relation = "lies inside"
            else:
                continue
            raise OutputFolderRefused(
                f"{stage}: the output folder {output_dir} {relation} its input {candidate}: a stage never writes where it reads "
                "(and --overwrite would delete the input); choose another output folder"
            )
