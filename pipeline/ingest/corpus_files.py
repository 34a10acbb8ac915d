"""Your own corpus among ingest's inputs: which files are JSONL, Parquet or plain text, what a folder
search takes, and the name each file's document ids are made from.

- **By name**, for a file named or matched by a glob: `.jsonl`, `.ndjson`, `.json` (each also `.gz`)
  are JSONL, `.parquet` is Parquet, `.txt` and `.txt.gz` are plain text; anything else is a WARC/WET
  file, as before. `.json.gz` is how C4 and Dolma ship JSON Lines; a `.json` file holding one JSON
  array is no JSONL, and its lines are quarantined (`invalid_json`), each named.
- **A folder search** (recursive) takes the folder's WARC/WET files. A folder that holds none is a
  corpus of your own: the search takes its `.jsonl`/`.ndjson` (`.gz`), `.json.gz` and `.parquet` files
  instead, leaving out names that are or lie under `.`/`_` names and crawlmill stage output folders
  (`_tasks.json`: an ingest output written inside its input folder is never read back as input).
  `.json` files (dataset_info.json, configs) and `.txt` files (READMEs, licences) of a folder are read
  only when named or globbed (`'data/zh/**/*.txt'`). A crawl folder with a corpus beside it: give both
  (a search that leaves .jsonl/.parquet files out beside WARC files says so on stderr).
- **A file's name** (`corpus_name`): its path from the parent of its input's folder (the folder
  searched, a glob's fixed leading folder, a named file's own folder), so `data/mine`,
  `'data/mine/*.jsonl'` and `data/mine/a.jsonl` all name that file `mine/a.jsonl`, local or in a
  bucket. Document ids are made from it, not from where the data lies (a copied or moved dataset keeps
  its ids); two files of one run with the same name are refused (`check_unique_names`).

Used by sources.py (`crawlmill ingest INPUT...`); tested in tests/pipeline/ingest/test_corpus_files.py.
"""

from __future__ import annotations

import posixpath
import re

from .config import WAT_NO_TEXT

JSONL, PARQUET, TEXT = "jsonl", "parquet", "text"
_KINDS = (
    (re.compile(r"\.(jsonl|ndjson|json)(\.gz)?$", re.I), JSONL),
    (re.compile(r"\.parquet$", re.I), PARQUET),
    (re.compile(r"\.txt(\.gz)?$", re.I), TEXT),
)
# What a folder search takes: archives (not .wat, whose metadata records hold no page text; a .wat
# named explicitly is still read, its records dropped) and, in a folder without them, corpus files.
ARCHIVE_IN_FOLDER = re.compile(r"\.(warc|wet|arc)(\.gz)?$", re.I)
_WAT = re.compile(r"\.wat(\.gz)?$", re.I)
_CORPUS_IN_FOLDER = re.compile(r"\.((jsonl|ndjson)(\.gz)?|json\.gz|parquet)$", re.I)
_STAGE_RECORD = "_tasks.json"  # every crawlmill stage output folder has one (pipeline/task_record.py)
_GLOB_CHARS = set("*?[")


def corpus_kind(source: str) -> str | None:
    """`jsonl`, `parquet` or `text` for a corpus file (by its name), None for a WARC/WET file."""
    name = source.rsplit("/", 1)[-1]  # "" for a URL ending in /: a folder
    return next((kind for suffix, kind in _KINDS if suffix.search(name)), None)


def folder_files(names: list[str]) -> list[str]:
    """Of the files under a folder (their paths relative to it, with `/`), those a folder search takes."""
    archives = [n for n in names if ARCHIVE_IN_FOLDER.search(n.rsplit("/", 1)[-1])]
    if archives:
        return archives
    stage_folders = {posixpath.dirname(n) for n in names if posixpath.basename(n) == _STAGE_RECORD}
    return [n for n in names if _CORPUS_IN_FOLDER.search(n) and not _left_out(n, stage_folders)]


def corpus_beside_archives(names: list[str]) -> list[str]:
    """The corpus files a folder search leaves out because the folder holds WARC/WET files too."""
    if not any(ARCHIVE_IN_FOLDER.search(n.rsplit("/", 1)[-1]) for n in names):
        return []
    stage_folders = {posixpath.dirname(n) for n in names if posixpath.basename(n) == _STAGE_RECORD}
    return [n for n in names if _CORPUS_IN_FOLDER.search(n) and not _left_out(n, stage_folders)]


def _left_out(name: str, stage_folders: set[str]) -> bool:
    parts = name.split("/")
    if any(part.startswith((".", "_")) for part in parts):
        return True
    folders = ["/".join(parts[:i]) for i in range(len(parts))]  # "" (the folder searched itself), a, a/b...
    return any(folder in stage_folders for folder in folders)


def no_files_message(folder: str, names: list[str]) -> str:
    """Why a folder search found nothing to read, for InputError."""
    message = f"{folder}: the folder holds no .warc/.wet(.gz) file"
    wat_files = sum(bool(_WAT.search(n)) for n in names)
    if wat_files:
        message += f" ({wat_files} .wat file(s) skipped: {WAT_NO_TEXT})"
    if any(posixpath.basename(n) == _STAGE_RECORD for n in names):
        message += "; it holds crawlmill stage output: give that folder to filter or dedup, not to ingest"
    named_only = [n for n in names if corpus_kind(n) is not None and not _CORPUS_IN_FOLDER.search(n)]
    if named_only:
        example = f"{folder.rstrip('/')}/**/*{'.txt' if corpus_kind(named_only[0]) == TEXT else '.json'}"
        message += f"; nor .jsonl/.parquet file, and its {len(named_only)} .txt/.json file(s) are read only when named or matched by a glob (e.g. '{example}')"
    return message


def glob_root(pattern: str) -> str:
    """The fixed leading folder of a glob pattern (`data/mine/*.jsonl` -> `data/mine`; `*.jsonl` -> ``)."""
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return "/".join(fixed) or ("/" if pattern.startswith("/") else "")


def corpus_name(path: str, root: str) -> str:
    """`path` (a `/`-separated path under the input folder `root`) from `root`'s parent: `mine/a.jsonl`."""
    root = root.rstrip("/")
    parent = posixpath.dirname(root)
    if parent and path.startswith(parent.rstrip("/") + "/"):
        return path[len(parent.rstrip("/")) + 1 :]
    return path.lstrip("/") if not parent else posixpath.basename(path)


def check_unique_names(named: dict[str, str | None]) -> None:
    """Refuse (ValueError) two corpus files of one run with the same name: their documents would share ids."""
    first: dict[str, str] = {}
    for source, name in named.items():
        if name is None or corpus_kind(source) is None:
            continue
        if name in first:
            raise ValueError(
                f"{first[name]} and {source} would give their documents the same ids (both are {name} under their "
                "input's folder, from which ids are made): give their folders different names, or ingest them in two runs with different --dump labels"
            )
        first[name] = source
