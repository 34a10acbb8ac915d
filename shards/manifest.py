"""Reading a pack output's `manifest.json`: the blend Megatron trains on, and where a token came from.

The manifest is written by `crawlmill pack` (crawlmill/pipeline/pack/manifest.py documents every
field); this module only reads it, so training and other readers need nothing of the pipeline.

    from crawlmill.shards.manifest import megatron_blend, locate_token
    prefixes, weights = megatron_blend("out/shards")        # BlendedMegatronDatasetConfig(blend=...)
    locate_token("out/shards", shard=0, token=12345)        # -> its document's id, URL, WARC record
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crawlmill.files import as_path, is_remote, read_table, read_text, sha256_file
from crawlmill.pathsafety import inside_folder

from .mmidx import read_index

MANIFEST = "manifest.json"
FORMAT = "crawlmill-pack/1"


def load_manifest(shard_dir: Any) -> dict[str, Any] | None:
    """The manifest of a shard folder (a path or a URL), or None when it has none. Every file it
    names (blend prefixes, shard prefixes and file names) must lie inside the folder: an error
    naming the manifest and the entry otherwise (`check_paths`)."""
    path = as_path(shard_dir) / MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(read_text(path))
    check_paths(manifest, path)
    return manifest


def folder_beside(anchor: Any, recorded: str) -> Any:
    """The folder named as `recorded`'s last name beside `anchor` (its parent's): where a folder an
    output recorded is once the whole output moved (pipeline/relocation.py)."""
    return as_path(anchor).parent / str(recorded).rstrip("/").rsplit("/", 1)[-1]


def tokenizer_folder(manifest: dict[str, Any], shard_dir: Any) -> str:
    """The folder of the tokenizer the shards were packed with: where the manifest says, or, when
    that is gone (the output moved since: pipeline/relocation.py), the folder of that name beside
    the shard folder, if its tokenizer.json is the one packed with (the manifest's sha256)."""
    entry = manifest["tokenizer"]
    recorded = str(entry["path"])
    if (as_path(recorded) / "tokenizer.json").is_file():
        return recorded
    beside = folder_beside(shard_dir, recorded)
    if (beside / "tokenizer.json").is_file() and sha256_file(beside / "tokenizer.json") == entry.get("sha256"):
        return str(beside)
    return recorded


def is_count(value: Any) -> bool:
    """Whether a manifest value is a count as pack writes one: an int (not a bool), 0 <= value < 2**63."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def check_paths(manifest: Any, path: Any) -> None:
    """OutsideFolderError (a ValueError) for a name in the manifest `path` that leaves its folder:
    training, `crawlmill shards` and the cache copy follow these names, and a shard folder may come
    from anyone (a shared bucket, a download). `inputs` (the packed parts, provenance) and the
    tokenizer's `path` (where pack read it) are records, not names in the folder: never opened here."""
    if not isinstance(manifest, dict):
        return  # not a pack manifest: its readers say so
    def listed(value: Any) -> list:  # a list where one belongs; anything else is the structure check's to refuse
        return value if isinstance(value, list) else []

    blend = manifest.get("blend")
    if isinstance(blend, dict):
        for i, prefix in enumerate(listed(blend.get("prefixes"))):
            inside_folder(prefix, path, f"blend.prefixes[{i}]")
        data_path = listed(blend.get("data_path"))
        for i in range(1, len(data_path), 2):  # [weight, prefix, weight, prefix, ...]
            inside_folder(data_path[i], path, f"blend.data_path[{i}]")
    for i, shard in enumerate(listed(manifest.get("shards"))):
        if not isinstance(shard, dict):
            continue
        if "prefix" in shard:
            inside_folder(shard["prefix"], path, f"shards[{i}].prefix")
        files = shard.get("files")
        for kind, entry in (files.items() if isinstance(files, dict) else ()):
            if isinstance(entry, dict) and "name" in entry:
                inside_folder(entry["name"], path, f"shards[{i}].files.{kind}.name")


def megatron_blend(shard_dir: str | Path) -> tuple[list[str], list[float]]:
    """The manifest's blend as BlendedMegatronDatasetConfig(blend=...) takes it: absolute prefixes, weights."""
    manifest = load_manifest(shard_dir)
    if manifest is None:
        raise FileNotFoundError(f"{shard_dir}: no {MANIFEST}")
    root = as_path(shard_dir)
    root = root if is_remote(root) else root.resolve()
    blend = manifest["blend"]
    return [str(root / p) for p in blend["prefixes"]], [float(w) for w in blend["weights"]]


def locate_token(shard_dir: str | Path, shard: int, token: int) -> dict[str, Any]:
    """The source document of token number `token` of shard `shard`: its row of the shard's docs table
    (input part path, row, id, url, dump, lang, domain, warc_file, warc_offset, warc_record_id) plus
    the document number and the token's offset within the document."""
    shard_dir = as_path(shard_dir)
    manifest = load_manifest(shard_dir)
    entry = manifest["shards"][shard] if manifest else {"prefix": f"shard-{shard:05d}"}
    index = read_index(shard_dir / f"{entry['prefix']}.idx")
    ends = np.cumsum(np.asarray(index.lengths, dtype=np.int64))
    if not 0 <= token < (int(ends[-1]) if len(ends) else 0):
        raise IndexError(f"{entry['prefix']} has {int(ends[-1]) if len(ends) else 0} tokens; no token {token}")
    document = int(np.searchsorted(ends, token, side="right"))
    row = read_table(shard_dir / f"{entry['prefix']}.docs.parquet").slice(document, 1).to_pylist()[0]
    if manifest:
        row["input_path"] = manifest["inputs"][row["input"]]
    start = int(ends[document - 1]) if document else 0
    return {**row, "document": document, "offset_in_document": token - start}
