"""Runs over several Common Crawl dumps: the per-dump layout, new dumps, and appending them.

A run config's `dumps:` section names the dumps of a run. Then the per-dump stages (the pipeline
list's `per_dump` entries: ingest, filter) run once per dump into `<output_dir>/<stage>/<dump>/`,
and the first stage after them (dedup) reads every dump's folder: one joint deduplication. The
Airflow DAG `crawlmill_pipeline` maps its per-dump tasks over `dumps.ids`.

Appending (`crawlmill run CONFIG --append --dump ID...`, the `crawlmill_new_dump` DAG): each given
dump, oldest first, goes through every stage into its own folders (`<output_dir>/<stage>/<dump>/`),
deduplicated incrementally against the dedup index of every dump appended before it
(`<output_dir>/dedup/_index`), tokenized with the one tokenizer of the output folder (trained on the
first appended dump unless the config names one), and packed into `<output_dir>/shards/<dump>/`.
Then `shards/blend.json` is rewritten over every appended dump's shards (each folder weighted by its
tokens, the way `crawlmill train --data` weights folders) and the dump is recorded in
`<output_dir>/_dumps.json`, the state a retried task or a restarted scheduler reads: a dump listed
there is never appended again.

    python -m crawlmill.pipeline.dumps new CONFIG.yaml   # the dumps an append run would take, as JSON
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from crawlmill.files import AnyPath, as_path, atomic_write_json, read_json
from crawlmill.pathsafety import inside_folder
from crawlmill.shards.manifest import load_manifest

from .ingest.config import DUMP_ID

COLLINFO_URL = "https://index.commoncrawl.org/collinfo.json"
STATE_FILE = "_dumps.json"
BLEND_FILE = "blend.json"
MANIFEST = "manifest.json"  # pack's (shards/manifest.py)
INDEX_FOLDER = "_index"  # under the dedup folder: the incremental dedup index of appended dumps


@dataclass
class DumpsConfig:
    """The run config's `dumps:` section."""

    # The dumps of a joint run (oldest first): per-dump stages run once each, dedup over all of them.
    ids: list[str] = field(default_factory=list)
    # New-dump runs: Common Crawl's list of crawls (a JSON list of {"id": "CC-MAIN-YYYY-WW", ...}).
    collinfo_url: str = COLLINFO_URL
    since: str | None = None  # new-dump runs: dumps older than this id are never taken
    max_new: int | None = None  # new-dump runs: at most this many dumps per run (the oldest first)

    def __post_init__(self) -> None:
        for dump in [*self.ids, *([self.since] if self.since else [])]:
            if not DUMP_ID.match(dump):
                raise ValueError(f"{dump!r} is not a Common Crawl dump id like CC-MAIN-2024-22")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"ids: a dump is listed twice: {self.ids}")
        if self.max_new is not None and self.max_new < 1:
            raise ValueError(f"max_new {self.max_new}: must be at least 1")
        self.ids = sorted(self.ids)  # CC-MAIN-YYYY-WW sorts by time


def crawl_list(url: str) -> list[str]:
    """The dump ids of a `collinfo.json` (a local path or any fsspec URL), oldest first."""
    import fsspec

    options = {"block_size": 0} if url.startswith(("http://", "https://")) else {}  # one streamed request
    try:
        with fsspec.open(url, "rb", **options) as f:
            data = json.loads(f.read())
    except Exception as exc:
        raise ValueError(f"cannot read the crawl list {url}: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{url}: expected a JSON list of crawls, got {type(data).__name__}")
    ids = {item.get("id") for item in data if isinstance(item, dict)}
    return sorted(i for i in ids if isinstance(i, str) and DUMP_ID.match(i))


def appended(output_dir: str | AnyPath) -> list[dict[str, Any]]:
    """The dumps an earlier append run finished, oldest first (`_dumps.json`). Each entry's dump is
    a dump id and its `shards` a folder inside `<output_dir>/shards`: an error naming the file and
    the entry otherwise (the file is data; the blend and the next append follow these names)."""
    path = as_path(output_dir) / STATE_FILE
    if not path.is_file():
        return []
    entries = read_json(path)["appended"]
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("dump"), str) or not DUMP_ID.match(entry["dump"]):
            raise ValueError(f"{path}: appended[{i}] {entry!r} is refused: its dump is not a Common Crawl dump id like CC-MAIN-2024-22")
        if "shards" in entry:
            inside_folder(entry["shards"], path, f"appended[{i}].shards")
    return entries


def new_dumps(config: DumpsConfig, output_dir: str | AnyPath, listed: list[str] | None = None) -> list[str]:
    """Dumps of the crawl list not appended yet, oldest first, from `since`, at most `max_new`.
    A dump older than the newest appended one is not taken: incremental dedup runs in time order."""
    listed = crawl_list(config.collinfo_url) if listed is None else sorted(listed)
    done = [entry["dump"] for entry in appended(output_dir)]
    newest = max(done) if done else ""
    todo = [d for d in listed if d not in done and d > newest and (config.since is None or d >= config.since)]
    return todo[: config.max_new] if config.max_new else todo


APPEND_LAST = "pack"  # appending runs the stages up to this one; its output is the dump's shards


def check_append(output_dir: str | AnyPath, dumps: list[str]) -> list[str]:
    """The dumps of an append run still to do, oldest first; an error for one older than an appended
    dump (incremental dedup keeps the earliest copy, so dumps are appended in time order)."""
    done = {entry["dump"] for entry in appended(output_dir)}
    todo = sorted(set(dumps) - done)
    for dump in todo:
        if not DUMP_ID.match(dump):
            raise ValueError(f"--dump {dump!r} is not a Common Crawl dump id like CC-MAIN-2024-22")
        if done and dump < max(done):
            raise ValueError(f"--dump {dump}: older than {max(done)}, which is appended already; dumps are appended oldest first")
    return todo


def prepare_append(run_config: Any, pipeline: Any, unit: Any) -> bool:
    """Settings of one stage run of an append run; False: skip it. Dedup reads and extends the dumps'
    index; the tokenizer is trained once, for the first dump, and reused after; a recorded dump is
    done; stages after pack (training) are not part of appending."""
    from dataclasses import replace

    names = pipeline.names
    if names.index(unit.spec.name) > names.index(APPEND_LAST):
        return False
    if unit.dump in {entry["dump"] for entry in appended(run_config.output_dir)}:
        return False
    if unit.spec.name == "dedup" and run_config.dedup.index is None:
        run_config.dedup = replace(run_config.dedup, index=str(pipeline.folder("dedup", run_config) / INDEX_FOLDER))
    if unit.spec.name == "tokenizer" and run_config.tokenizer.path is None:
        trained = pipeline.folder("tokenizer", run_config)
        if (trained / "_SUCCESS").is_file():
            run_config.tokenizer = replace(run_config.tokenizer, path=str(trained))
    return True


def record_appended(output_dir: str | AnyPath, dump: str, shards: str | AnyPath) -> dict[str, Any]:
    """Add `dump` (packed into `shards`) to `_dumps.json` and rewrite `shards/blend.json` over every
    appended dump. Returns the blend. Rerunning it for a recorded dump changes nothing."""
    output_dir, shards = as_path(output_dir), as_path(shards)
    entries = [e for e in appended(output_dir) if e["dump"] != dump]
    if not (shards / MANIFEST).is_file():
        raise FileNotFoundError(f"{shards}: no {MANIFEST}; pack {dump} before recording it")
    manifest = read_json(shards / MANIFEST)
    entries.append({"dump": dump, "shards": shards.name,
                    "tokens": int(manifest["tokens"]), "documents": int(manifest["documents"]),
                    "tokenizer_sha256": manifest["tokenizer"]["sha256"]})  # fmt: skip
    entries.sort(key=lambda e: e["dump"])
    blend = write_blend(output_dir / "shards", entries)
    atomic_write_json(output_dir / STATE_FILE, {"appended": entries})  # last: the dump's commit
    return blend


def write_blend(shards_dir: AnyPath, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """`blend.json` over the appended dumps' shard folders: each folder weighted by its tokens, split
    over its shards by its own manifest's blend; `data_path` is Megatron-LM's `--data-path` form."""
    if len({e["tokenizer_sha256"] for e in entries}) > 1:
        raise ValueError(f"{shards_dir}: the appended dumps were tokenized with different tokenizers")
    total = sum(e["tokens"] for e in entries)
    data_path: list[Any] = []
    for entry in entries:
        manifest = load_manifest(shards_dir / entry["shards"])  # its names checked to stay in its folder
        if manifest is None:
            raise FileNotFoundError(f"{shards_dir / entry['shards']}: no {MANIFEST}")
        own = manifest["blend"]
        for prefix, weight in zip(own["prefixes"], own["weights"]):
            data_path += [entry["tokens"] / total * float(weight), f"{entry['shards']}/{prefix}"]
    blend = {"dumps": [e["dump"] for e in entries], "folders": [e["shards"] for e in entries],
             "weights": [e["tokens"] / total for e in entries], "tokens": total,
             "documents": sum(e["documents"] for e in entries), "data_path": data_path}  # fmt: skip
    atomic_write_json(shards_dir / BLEND_FILE, blend)
    return blend


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "new":
        print("usage: python -m crawlmill.pipeline.dumps new CONFIG.yaml", file=sys.stderr)
        return 2
    from .config import load_run_config

    config = load_run_config(argv[1])
    print(json.dumps(new_dumps(config.dumps, config.output_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
