"""Names read from data folders stay inside their folder: a shard manifest's prefixes and file names
(every reader: megatron_blend for training, open_shards for `crawlmill shards`), a part marker's
groups and index, `_dumps.json`'s shard folders; `../x`, an absolute path or another bucket's URL
is refused with an error naming the file and the entry. `_tasks.json` is compared, never followed.
(The user's run config may point anywhere, configs/demo.yaml's `../samples` included: not data.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crawlmill.pathsafety import OutsideFolderError
from crawlmill.pipeline.dumps import STATE_FILE, appended
from crawlmill.pipeline.parts import input_parts
from crawlmill.pipeline.output_folder import TASKS_FILE
from crawlmill.pipeline.stage import StageInputMismatch
from crawlmill.pipeline.task_record import check_task_record
from crawlmill.shards.manifest import megatron_blend
from crawlmill.shards.shardset import ShardError, open_shards

BAD = ["../x", "/abs/elsewhere", "s3://other-bucket/shards/x", "a/../../x"]


def _manifest(folder: Path, **changes: str) -> None:
    """A small pack manifest with one entry replaced: prefix, blend, data_path or file."""
    good = "shard-00000"
    manifest = {
        "format": "crawlmill-pack/1",
        "shards": [{"prefix": changes.get("prefix", good), "files": {"bin": {"name": changes.get("file", f"{good}.bin"), "bytes": 0, "sha256": ""}}}],
        "blend": {"method": "tokens", "prefixes": [changes.get("blend", good)], "weights": [1.0], "data_path": ["1.0", changes.get("data_path", good)]},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_good_manifest_blends_inside_its_folder(tmp_path: Path) -> None:
    _manifest(tmp_path / "shards")
    assert megatron_blend(tmp_path / "shards") == ([str((tmp_path / "shards" / "shard-00000").resolve())], [1.0])


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize(
    "key, entry", [("blend", "blend.prefixes[0]"), ("data_path", "blend.data_path[1]"), ("prefix", "shards[0].prefix"), ("file", "shards[0].files.bin.name")]
)
def test_manifest_names_outside_the_folder_are_refused(tmp_path: Path, key: str, entry: str, bad: str) -> None:
    folder = tmp_path / "shards"
    _manifest(folder, **{key: bad})
    expected = re.escape(f"{folder / 'manifest.json'}: {entry} '{bad}' is refused")
    with pytest.raises(OutsideFolderError, match=expected):
        megatron_blend(folder)  # training
    with pytest.raises(ShardError, match=expected):
        open_shards(folder)  # crawlmill shards inspect|verify|sample|stats


@pytest.mark.parametrize("bad", BAD)
def test_part_markers_name_parts_of_their_folder(tmp_path: Path, bad: str) -> None:
    folder = tmp_path / "remix"
    (folder / "_parts").mkdir(parents=True)
    (folder / "_SUCCESS").write_text("")
    (folder / "part-web-00000.parquet").write_bytes(b"")
    marker = folder / "_parts" / "part-00000.json"
    marker.write_text(json.dumps({"index": 0, "groups": {"web": {}, bad: {}}}))
    with pytest.raises(OutsideFolderError, match=re.escape(f"{marker}: groups[1] '{bad}' is refused")):
        input_parts(folder)
    marker.write_text(json.dumps({"index": bad}))
    with pytest.raises(ValueError, match=re.escape(f"{marker}: index '{bad}' is refused")):
        input_parts(folder)


@pytest.mark.parametrize("bad", BAD)
def test_dumps_state_names_shard_folders_of_the_output(tmp_path: Path, bad: str) -> None:
    state = tmp_path / STATE_FILE
    entry = {"dump": "CC-MAIN-2024-10", "shards": "CC-MAIN-2024-10", "tokens": 1, "documents": 1, "tokenizer_sha256": "x"}
    state.write_text(json.dumps({"appended": [entry]}))
    assert appended(tmp_path) == [entry]
    state.write_text(json.dumps({"appended": [entry, {**entry, "dump": "CC-MAIN-2024-18", "shards": bad}]}))
    with pytest.raises(OutsideFolderError, match=re.escape(f"{state}: appended[1].shards '{bad}' is refused")):
        appended(tmp_path)
    state.write_text(json.dumps({"appended": [{**entry, "dump": bad}]}))
    with pytest.raises(ValueError, match=re.escape(f"{state}: appended[0] ") + ".* is refused: its dump is not a Common Crawl dump id"):
        appended(tmp_path)


def test_a_tasks_record_is_compared_not_followed(tmp_path: Path) -> None:
    # _tasks.json only has to equal what the run would record; names in it are never opened
    (tmp_path / TASKS_FILE).write_text(json.dumps({"stage": "filter", "settings": {}, "sources": ["../x", "/abs/elsewhere", "s3://other-bucket/x"]}))
    (tmp_path / "_parts").mkdir()
    (tmp_path / "_parts/part-00000.json").write_text("{}")  # a task finished: the folder is that run's
    with pytest.raises(StageInputMismatch, match=re.escape(f"see {tmp_path / TASKS_FILE}")):
        check_task_record(tmp_path, {"stage": "filter", "settings": {}, "sources": ["in/part-00000.parquet"]})
