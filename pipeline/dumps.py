"""Runs over several Common Crawl dumps: the per-dump layout, new dumps, and appending them.

A run config's `dumps:` section names the dumps of a run. Then the per-dump stages (the pipeline
list's `per_dump` entries: ingest, filter, and quality after dedup) run once per dump into
`<output_dir>/<stage>/<dump>/`, and dedup reads every dump's filter folder: one joint deduplication. The
Airflow DAG `crawlmill_pipeline` maps its per-dump tasks over `dumps.ids`. The joint dedup is the
first run of the dumps' dedup index (`<output_dir>/dedup/_index`, or the config's `dedup.index`),
and once the joint pack has finished its dumps are recorded in `<output_dir>/_dumps.json` (one
entry, its shards folder `<output_dir>/shards` itself): dumps appended later build on it.

Appending (`crawlmill run CONFIG --append --dump ID...`, the `crawlmill_new_dump` DAG): each given
dump, oldest first, goes through every stage into its own folders (`<output_dir>/<stage>/<dump>/`),
deduplicated incrementally against the dedup index of the joint run and every dump appended before
it, tokenized with the one tokenizer of the output folder (the joint run's, else trained on the
first appended dump, unless the config names one), and packed into `<output_dir>/shards/<dump>/`.
Then `shards/blend.json` is rewritten over the joint shards and every appended dump's (each folder
weighted by its tokens, the way `crawlmill train --data` weights folders) and the dump is recorded
in `<output_dir>/_dumps.json`, the state a retried task or a restarted scheduler reads: a dump listed
there is never appended again, and one older than a listed dump is refused.

    python -m crawlmill.pipeline.dumps new CONFIG.yaml   # the dumps an append run would take, as JSON
"""

from __future__ import annotations

import json
import posixpath
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
INDEX_FOLDER = "_index"  # under the dedup folder: the incremental dedup index of the joint run and appended dumps
JOINT_SHARDS = "."  # a joint run's entry in _dumps.json: its shards are the shards folder itself


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
        from crawlmill.store_errors import root_cause

        raise ValueError(f"cannot read the crawl list {url}: {root_cause(exc)}") from exc
    if not isinstance(data, list):
        raise ValueError(f"{url}: expected a JSON list of crawls, got {type(data).__name__}")
    ids = {item.get("id") for item in data if isinstance(item, dict)}
    return sorted(i for i in ids if isinstance(i, str) and DUMP_ID.match(i))


def appended(output_dir: str | AnyPath) -> list[dict[str, Any]]:
    """The runs recorded in `_dumps.json`, oldest first: a joint run's entry first where there is
    one (`dumps`: its dump ids), then each appended dump's (`dump`). Each dump is a dump id and each
    `shards` a folder inside `<output_dir>/shards` (a joint run's: the folder itself, "."): an error
    naming the file and the entry otherwise (the file is data; the blend and the next append follow
    these names)."""
    path = as_path(output_dir) / STATE_FILE
    if not path.is_file():
        return []
    entries = read_json(path)["appended"]
    for i, entry in enumerate(entries):
        joint = isinstance(entry, dict) and "dumps" in entry
        ids = entry.get("dumps") if joint else [entry.get("dump")] if isinstance(entry, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(d, str) and DUMP_ID.match(d) for d in ids):
            raise ValueError(f"{path}: appended[{i}] {entry!r} is refused: its dump is not a Common Crawl dump id like CC-MAIN-2024-22")
        if joint and (i != 0 or entry.get("shards") != JOINT_SHARDS):
            raise ValueError(f"{path}: appended[{i}] {entry!r} is refused: a joint run's entry is the first, its shards {JOINT_SHARDS!r}")
        if "shards" in entry:
            inside_folder(entry["shards"], path, f"appended[{i}].shards")
    return entries


def recorded_dumps(output_dir: str | AnyPath) -> list[str]:
    """Every dump `_dumps.json` records, the joint run's and the appended ones, oldest first."""
    return sorted(d for entry in appended(output_dir) for d in entry.get("dumps", [entry.get("dump")]))


def appended_dumps(output_dir: str | AnyPath) -> list[str]:
    """The dumps appended to the output (each in its own folders), oldest first; not a joint run's."""
    return [entry["dump"] for entry in appended(output_dir) if "dump" in entry]


def new_dumps(config: DumpsConfig, output_dir: str | AnyPath, listed: list[str] | None = None) -> list[str]:
    """Dumps of the crawl list not appended yet, oldest first, from `since`, at most `max_new`.
    A dump older than the newest recorded one (appended or of the joint run) is not taken:
    incremental dedup runs in time order."""
    listed = crawl_list(config.collinfo_url) if listed is None else sorted(listed)
    done = recorded_dumps(output_dir)
    newest = max(done) if done else ""
    todo = [d for d in listed if d not in done and d > newest and (config.since is None or d >= config.since)]
    return todo[: config.max_new] if config.max_new else todo


APPEND_LAST = "pack"  # appending runs the stages up to this one; its output is the dump's shards


def check_append(output_dir: str | AnyPath, dumps: list[str]) -> list[str]:
    """The dumps of an append run still to do, oldest first; an error for one older than a recorded
    dump (incremental dedup keeps the earliest copy, so dumps are appended in time order)."""
    done = set(recorded_dumps(output_dir))
    todo = sorted(set(dumps) - done)
    for dump in todo:
        if not DUMP_ID.match(dump):
            raise ValueError(f"--dump {dump!r} is not a Common Crawl dump id like CC-MAIN-2024-22")
        if done and dump < max(done):
            raise ValueError(f"--dump {dump}: older than {max(done)}, which this output holds already; dumps are appended oldest first")
    return todo


def prepare_append(run_config: Any, pipeline: Any, unit: Any) -> bool:
    """Settings of one stage run of an append run; False: skip it. Dedup reads and extends the dumps'
    index; the tokenizer is trained once (by the joint run, else for the first dump) and reused after; a recorded dump is
    done; stages after pack (training) are not part of appending."""
    from dataclasses import replace

    names = pipeline.names
    if names.index(unit.spec.name) > names.index(APPEND_LAST):
        return False
    if unit.dump in recorded_dumps(run_config.output_dir):
        return False
    if unit.spec.name == "dedup" and run_config.dedup.index is None:
        run_config.dedup = replace(run_config.dedup, index=str(pipeline.folder("dedup", run_config) / INDEX_FOLDER))
    if unit.spec.name == "tokenizer" and run_config.tokenizer.path is None:
        trained = pipeline.folder("tokenizer", run_config)
        if (trained / "_SUCCESS").is_file():
            run_config.tokenizer = replace(run_config.tokenizer, path=str(trained))
    return True


def prepare_joint(run_config: Any, pipeline: Any, overwrite: bool = False, from_dedup: bool = False) -> None:
    """A joint run (`dumps.ids`, not appending): its dedup is the first run of the dumps' index, the
    one an append run extends, unless the config names `dedup.index`. A dedup folder whose record has
    no index (an earlier version's joint run) keeps it off, so that it stays done instead of being
    refused as changed; `check_joint` then refuses to append to it. --overwrite recomputes it with
    the index. Refused (ValueError): ids added to a joint run that has run, when dedup or a stage
    after it runs (`from_dedup`) without `overwrite` (the per-dump stages before it may run: the
    way to a joint run made again with them), and a joint run in an output made by appending alone."""
    from dataclasses import replace

    from .output_folder import TASKS_FILE  # not at the top: the Airflow scheduler imports this module (no pyarrow)

    if not run_config.dumps.ids:
        return
    folder = pipeline.folder("dedup", run_config)
    record = folder / TASKS_FILE
    earlier = appended_dumps(run_config.output_dir)
    if earlier and not record.is_file():
        raise ValueError(
            f"{run_config.output_dir} was made by appending dumps ({', '.join(earlier)}): a joint run cannot come before "
            "them; add newer dumps with --append, or make the joint run into another output_dir"
        )
    if from_dedup and not overwrite:
        missing = joint_dumps_missing(run_config, pipeline)
        if missing:
            raise ValueError(_grown_ids(missing, folder, pipeline))
    if run_config.dedup.index is not None:
        return
    if not overwrite and record.is_file() and read_json(record).get("settings", {}).get("index") is None:
        return
    run_config.dedup = replace(run_config.dedup, index=str(folder / INDEX_FOLDER))


def joint_dumps_missing(run_config: Any, pipeline: Any) -> list[str]:
    """The dumps of `dumps.ids` that the finished joint dedup did not read (ids added after it ran),
    from its record's input folders (task_record.input_records); none for an unfinished one."""
    from .output_folder import SUCCESS_FILE, TASKS_FILE, folder_key
    from .task_record import INPUTS_MADE

    folder = pipeline.folder("dedup", run_config)
    if not (folder / SUCCESS_FILE).is_file() or not (folder / TASKS_FILE).is_file():
        return []
    read = set(read_json(folder / TASKS_FILE).get(INPUTS_MADE) or {})
    if not read:  # a record of a version before inputs were recorded: what it read is unknown
        return []
    feeder = pipeline.get("dedup").reads[0]
    # An output moved since (relocation.py): a dump's folder read by the same last names, <stage>/<dump>.
    tails = {"/".join(key.split("/")[-2:]) for key in read}
    keys = {dump: folder_key(pipeline.folder(feeder, run_config, dump)) for dump in run_config.dumps.ids}
    return [dump for dump, key in keys.items() if key not in read and "/".join(key.split("/")[-2:]) not in tails]


def _grown_ids(missing: list[str], folder: AnyPath, pipeline: Any) -> str:
    before = [name for name in pipeline.names[: pipeline.names.index("dedup")] if pipeline.get(name).per_dump]
    steps = ", ".join(f"`crawlmill run CONFIG --only {name} --dump ID`" for name in before)
    return (
        f"dumps.ids lists {', '.join(missing)}, which the joint run's dedup ({folder}) did not read: a joint run's "
        "dumps are fixed once it has run. Append them instead (take them out of ids; `crawlmill run CONFIG --append "
        f"--dump ID`), or make the joint run again with them ({steps} for each, then `crawlmill run CONFIG --from dedup --overwrite`)"
    )


def record_joint_run(run_config: Any, pipeline: Any, shards: AnyPath) -> dict[str, Any] | None:
    """Record a joint run whose pack has finished (`record_joint`), once it is known to hold every
    dump of `dumps.ids`. Not recorded: a joint dedup that is not in the dumps' index (an earlier
    version's, which dumps appended to it were not deduplicated against: its blend stays as it
    was). A ValueError for ids added after the joint dedup ran."""
    from .dedup import index

    folder = pipeline.folder("dedup", run_config)
    missing = joint_dumps_missing(run_config, pipeline)
    if missing:
        raise ValueError(_grown_ids(missing, folder, pipeline))
    index_dir = run_config.dedup.index or str(folder / INDEX_FOLDER)
    if index.run_position(index.load_manifest(index_dir), folder) is None:
        return None
    return record_joint(run_config.output_dir, run_config.dumps.ids, shards)


def check_joint(run_config: Any, pipeline: Any) -> None:
    """Before appending: an output with a joint dedup run must have it in the dumps' index (else the
    appended dumps would not be deduplicated against its dumps) and its pack recorded (else it would
    not be in the blend, and its dumps not be done). A ValueError saying what to run otherwise."""
    from .dedup import index
    from .output_folder import SUCCESS_FILE, TASKS_FILE

    folder = pipeline.folder("dedup", run_config)
    if not (folder / TASKS_FILE).is_file():  # no joint run: an output made by appending alone
        return
    index_dir = run_config.dedup.index or str(folder / INDEX_FOLDER)
    finished = (folder / SUCCESS_FILE).is_file()
    if finished and index.run_position(index.load_manifest(index_dir), folder) is None:
        ids = run_config.dumps.ids
        redo = ("recompute the joint run from dedup with `crawlmill run CONFIG --from dedup --overwrite`, then append"
                if ids else "append to the output of a joint run (`dumps: {ids: [...]}`) or to one made by appending alone")  # fmt: skip
        earlier = appended_dumps(run_config.output_dir)
        if earlier:  # their folders lie inside the joint run's: --overwrite of it is refused while they are there
            redo = (f"the dumps appended to it so far ({', '.join(earlier)}) were not deduplicated against it either: make "
                    "the joint run again into another output_dir and append there")  # fmt: skip
        also = ""
        raise ValueError(
            f"--append: the joint dedup run in {folder} is not in the dumps' dedup index {index_dir} (it ran without one: "
            f"an earlier crawlmill, or another dedup.index), so an appended dump would not be deduplicated against its "
            f"documents: {redo}{also}"
        )
    if not finished or not any("dumps" in entry for entry in appended(run_config.output_dir)):
        raise ValueError(f"--append: the joint run in {run_config.output_dir} has not finished (its pack is not recorded "
                         f"in {STATE_FILE}): finish it first with `crawlmill run CONFIG`, then append")  # fmt: skip


def _pack_entry(shards: AnyPath, name: str) -> dict[str, Any]:
    if not (shards / MANIFEST).is_file():
        raise FileNotFoundError(f"{shards}: no {MANIFEST}; pack it before recording it")
    manifest = read_json(shards / MANIFEST)
    return {"shards": name, "tokens": int(manifest["tokens"]), "documents": int(manifest["documents"]),
            "tokenizer_sha256": manifest["tokenizer"]["sha256"]}  # fmt: skip


def _record(output_dir: AnyPath, entries: list[dict[str, Any]]) -> dict[str, Any]:
    entries.sort(key=lambda e: ("dump" in e, e.get("dump", "")))  # the joint run first, then by dump
    blend = write_blend(output_dir / "shards", entries)
    atomic_write_json(output_dir / STATE_FILE, {"appended": entries})  # last: the commit
    return blend


def record_joint(output_dir: str | AnyPath, dumps: list[str], shards: str | AnyPath) -> dict[str, Any]:
    """Record the joint run of `dumps` (packed into `shards`, the output's shards folder itself) in
    `_dumps.json` and rewrite `shards/blend.json`. Returns the blend. Recording it again changes nothing."""
    output_dir = as_path(output_dir)
    entries = [e for e in appended(output_dir) if "dumps" not in e]
    return _record(output_dir, [{"dumps": sorted(dumps), **_pack_entry(as_path(shards), JOINT_SHARDS)}, *entries])


def record_appended(output_dir: str | AnyPath, dump: str, shards: str | AnyPath) -> dict[str, Any]:
    """Add `dump` (packed into `shards`) to `_dumps.json` and rewrite `shards/blend.json` over the
    joint run and every appended dump. Returns the blend. Rerunning it for a recorded dump changes nothing."""
    output_dir, shards = as_path(output_dir), as_path(shards)
    entries = [e for e in appended(output_dir) if e.get("dump") != dump]
    return _record(output_dir, [*entries, {"dump": dump, **_pack_entry(shards, shards.name)}])


def write_blend(shards_dir: AnyPath, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """`blend.json` over the recorded shard folders (the joint run's is `shards_dir` itself): each
    folder weighted by its tokens, split over its shards by its own manifest's blend; `data_path` is
    Megatron-LM's `--data-path` form, relative to `shards_dir`; `dumps`: every dump it covers."""
    if len({e["tokenizer_sha256"] for e in entries}) > 1:
        raise ValueError(f"{shards_dir}: the recorded dumps were tokenized with different tokenizers")
    total = sum(e["tokens"] for e in entries)
    data_path: list[Any] = []
    for entry in entries:
        # The joint run's "." joined literally is a key `shards/./manifest.json` in an object store.
        folder = shards_dir if entry["shards"] == JOINT_SHARDS else shards_dir / entry["shards"]
        manifest = load_manifest(folder)  # its names checked to stay in its folder
        if manifest is None:
            raise FileNotFoundError(f"{folder}: no {MANIFEST}")
        own = manifest["blend"]
        for prefix, weight in zip(own["prefixes"], own["weights"]):
            data_path += [entry["tokens"] / total * float(weight), posixpath.normpath(f"{entry['shards']}/{prefix}")]
    blend = {"dumps": [d for e in entries for d in e.get("dumps", [e.get("dump")])], "folders": [e["shards"] for e in entries],
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
