"""The remix output folder, as the remix stage writes it and pack (and any reader) reads it:

    part-<group>-NNNNN.parquet   the documents of input part NNNNN that fell in <group>, in input order:
                                 the input's columns plus `domain` and `group` (REMIX_SCHEMA for a
                                 document-schema input); a (group, part) with no documents has no file
    _mixture.json                per group: documents, characters (and tokens), share before, target,
                                 share, epochs, shortfall; the method and its settings (stage.py)
    _mixture.png                 the shares before and after, per group
    _parts/part-NNNNN.json       input part NNNNN's counts, per group; _stats.json, _SUCCESS as every stage

Sorted by name, the parts come group by group (groups in name order), input order within a group,
so a reader of the folder as any stage output (`input_parts`, e.g. the tokenizer) sees every
document once, and pack cuts each group into shards of its own (`<group>-00000`, ...). Every name
but the parts starts with `_`, which Parquet readers (pyarrow, pandas, Ray Data) skip, so they read
the folder as one dataset of its parts. Earlier versions wrote `mixture.json` and `mixture.png`
instead: such a folder is still read (`mixture_path`).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from crawlmill.files import AnyPath, as_path

from ..schema import DOCUMENT_SCHEMA

# `_` names: a Parquet reader skips them, where `mixture.json` beside the parts made pyarrow fail
# reading it as a part ("Parquet magic bytes not found").
MIXTURE_FILE = "_mixture.json"
MIXTURE_PLOT = "_mixture.png"
# What versions before that wrote: their folders are still read by pack (mixture_path), owned by
# crawlmill for --overwrite (output_folder.py OWN_NAMES) and resumed (stage.py removes them then).
LEGACY_MIXTURE_FILE = "mixture.json"
LEGACY_MIXTURE_PLOT = "mixture.png"
FORMAT = "crawlmill-mixture/1"
GROUP_COLUMNS = [pa.field("domain", pa.string()), pa.field("group", pa.string(), nullable=False)]
_GROUP_PART = re.compile(r"^part-(?P<group>[a-z0-9][a-z0-9_-]*)-(?P<index>\d{5,})\.parquet$")


def with_group_columns(schema: pa.Schema) -> pa.Schema:
    """An input part's schema with `domain` and `group` last (replacing any it had)."""
    kept = [f for f in schema if f.name not in ("domain", "group")]
    return pa.schema([*kept, *GROUP_COLUMNS])


REMIX_SCHEMA = with_group_columns(DOCUMENT_SCHEMA)


def group_part_name(group: str, index: int) -> str:
    return f"part-{group}-{index:05d}"


def part_group(path: Any) -> str | None:
    """The group of a remix output part, from its name; None for any other part."""
    match = _GROUP_PART.match(as_path(path).name)
    return match.group("group") if match else None


def mixture_path(folder: Any) -> AnyPath | None:
    """A remix output folder's mixture file: `_mixture.json`, else an earlier version's
    `mixture.json` (a folder it finished keeps that name); None for any other folder."""
    folder = as_path(folder)
    for name in (MIXTURE_FILE, LEGACY_MIXTURE_FILE):  # the new name first: it is what this version writes
        if (folder / name).is_file():
            return folder / name
    return None


def read_mixture(folder: Any) -> dict[str, Any] | None:
    """A remix output folder's mixture (`mixture_path`); None for any other folder."""
    path = mixture_path(folder)
    if path is None:
        return None
    mixture = json.loads(path.read_text(encoding="utf-8"))
    if mixture.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (format {mixture.get('format')!r})")
    return mixture
