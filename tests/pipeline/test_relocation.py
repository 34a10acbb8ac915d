"""An output moved or copied with the folders it reads resumes where it is now, and its finished
stages stay done (pipeline/relocation.py, task_record.py); before, every stage of a moved output was
refused as made from other inputs, with no way on but --overwrite. Paths that did not move (inputs
beside the output, a folder linked back from another disk) match as they are."""

import json
import shutil

import pytest

from crawlmill.pipeline.output_folder import folder_key
from crawlmill.pipeline.relocation import align, moved_roots, relocate
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageInputMismatch
from crawlmill.pipeline.task_record import check_task_record
from tests.pipeline.lines_stage import LinesStage, folder_bytes


def test_the_roots_are_the_paths_without_their_common_last_names():
    assert moved_roots("/tmp/a/out/filter", "/data/out/filter") == ("/tmp/a", "/data")
    assert moved_roots("/x/out/CC-MAIN-2024-10/filter", "/y/z/out/CC-MAIN-2024-10/filter") == ("/x", "/y/z")
    assert moved_roots("s3://bucket/runs/out/dedup", "/local/out/dedup") == ("s3://bucket/runs", "/local")  # synced down
    assert moved_roots("/tmp/a/run1", "/tmp/a/run2") == ("/tmp/a/run1", "/tmp/a/run2")  # a folder renamed
    assert moved_roots("/tmp/a/out/filter", "/tmp/a/out/filter") is None


def test_only_paths_under_the_old_root_move():
    record = {"sources": ["/tmp/a/out/ingest/part-00000.parquet", "/data/cc/x.warc.gz", "/tmp/ab/y"], "inputs_made": {"/tmp/a/out/ingest": "d1"},
              "settings": {"index": "/tmp/a/out/dedup/_index", "n": 3}}  # fmt: skip
    assert relocate(record, "/tmp/a", "/data/b") == {
        "sources": ["/data/b/out/ingest/part-00000.parquet", "/data/cc/x.warc.gz", "/tmp/ab/y"],  # /tmp/ab is not under /tmp/a
        "inputs_made": {"/data/b/out/ingest": "d1"},
        "settings": {"index": "/data/b/out/dedup/_index", "n": 3},
    }


def test_a_record_is_aligned_only_when_one_move_of_the_tree_holding_the_folder_explains_every_difference():
    found = {"stage": "filter", "settings": {"keep": "longest"}, "sources": ["/p/out/ingest/a.parquet", "/cc/x.warc.gz"], "inputs_made": {"/p/out/ingest": "d1"}}
    moved = {**found, "sources": ["/d/out/ingest/a.parquet", "/cc/x.warc.gz"], "inputs_made": {"/d/out/ingest": "d1"}}
    assert align(found, moved, ("/d/out/filter",)) == moved
    assert align(found, moved, ("/elsewhere/filter",)) == found  # its inputs moved, not the folder: other inputs
    assert align(found, {**moved, "settings": {"keep": "earliest_dump"}}, ("/d/out/filter",)) == found  # a move and a setting
    assert align(found, {**found, "sources": ["/p/out/ingest/b.parquet", "/cc/x.warc.gz"]}, ("/p/out/filter",)) == found
    assert align(found, {**moved, "inputs_made": {"/d/out/ingest": "d2"}}, ("/d/out/filter",)) == found  # made again since: refused as before


def record_at(root, stage="filter"):
    return {"stage": stage, "settings": {"lines": 2}, "sources": [f"{root}/out/ingest/part-00000.parquet", "/data/cc/a.warc.gz"],
            "inputs_made": {f"{root}/out/ingest": "6afbd1ecaee36f88"}}  # fmt: skip


def written(folder, record):
    folder.mkdir(parents=True, exist_ok=True)
    check_task_record(folder, record)
    (folder / "part-00000.parquet").write_bytes(b"written")


@pytest.mark.parametrize("finished", [True, False])
def test_a_record_moved_with_its_inputs_is_the_same_record(tmp_path, finished):
    old, new = tmp_path / "a", tmp_path / "b"
    written(old / "out/filter", record_at(old))
    shutil.move(old, new)
    check_task_record(new / "out/filter", record_at(new), finished=finished)
    # finished: kept as it was (readers of it hold a digest of it); resumed: what it reads from now on
    assert json.loads((new / "out/filter/_tasks.json").read_text()) == (record_at(old) if finished else record_at(new))


def test_a_folder_moved_alone_reads_its_inputs_where_they_are_and_other_inputs_are_refused(tmp_path):
    old = tmp_path / "a"
    written(old / "out/filter", record_at(old))
    shutil.move(old / "out/filter", tmp_path / "elsewhere")
    check_task_record(tmp_path / "elsewhere", record_at(old), finished=True)  # the same inputs, where they stayed
    other_crawl = {**record_at(old), "sources": [f"{old}/out/ingest/part-00000.parquet", "/data/cc/b.warc.gz"]}
    with pytest.raises(StageInputMismatch, match="other inputs"):
        check_task_record(tmp_path / "elsewhere", other_crawl, finished=True)
    with pytest.raises(StageInputMismatch, match="other inputs"):  # inputs moved elsewhere, the folder not with them
        check_task_record(tmp_path / "elsewhere", record_at(tmp_path / "b"), finished=True)


def test_an_output_moved_away_from_the_inputs_beside_it_stays_done(tmp_path):
    """The demo's own layout (demo-output/ beside samples/): `mv proj/out data/out`; the WARC files
    stay in proj/crawl-data and are read where they are (a user's journey found it refused)."""
    proj = tmp_path / "proj"
    ingest = {"stage": "ingest", "settings": {}, "sources": [str(proj / "crawl-data/a.warc.gz")]}
    written(proj / "out/ingest", ingest)
    beside = {**record_at(proj), "sources": [f"{proj}/out/ingest/part-00000.parquet", str(proj / "crawl-data/a.warc.gz")]}
    written(proj / "out/filter", beside)
    (tmp_path / "data").mkdir()
    shutil.move(proj / "out", tmp_path / "data/out")
    check_task_record(tmp_path / "data/out/ingest", ingest, finished=True)
    now = {**record_at(tmp_path / "data"), "sources": [f"{tmp_path}/data/out/ingest/part-00000.parquet", str(proj / "crawl-data/a.warc.gz")]}
    check_task_record(tmp_path / "data/out/filter", now, finished=True)


def test_a_finished_stage_folder_moved_to_another_disk_and_linked_back_stays_done(tmp_path):
    """`mv out/shards /fast/shards && ln -s /fast/shards out/shards`: nothing it reads moved."""
    out = tmp_path / "out"
    record = {"stage": "pack", "settings": {}, "sources": [str(out / "remix/part-00000.parquet")], "inputs_made": {str(out / "remix"): "6afbd1ecaee36f88"}}
    written(out / "shards", record)
    (tmp_path / "fast").mkdir()
    shutil.move(out / "shards", tmp_path / "fast/shards")
    (out / "shards").symlink_to(tmp_path / "fast/shards")
    assert folder_key(out / "shards") == str(tmp_path / "fast/shards")
    check_task_record(out / "shards", record, finished=True)


def test_an_output_folder_renamed_in_place_stays_done(tmp_path):
    """`mv out out-old`: the folders it reads are read under out-old, its inputs beside it where they are."""
    warc = str(tmp_path / "in/a.warc.gz")
    record = {"stage": "filter", "settings": {}, "sources": [str(tmp_path / "out/ingest/part-00000.parquet"), warc], "inputs_made": {str(tmp_path / "out/ingest"): "d1"}}
    written(tmp_path / "out/filter", record)
    moved = tmp_path / "out-old"
    shutil.move(tmp_path / "out", moved)
    check_task_record(moved / "filter", {**record, "sources": [str(moved / "ingest/part-00000.parquet"), warc], "inputs_made": {str(moved / "ingest"): "d1"}}, finished=True)


def test_two_stage_folders_moved_together_resume_and_stay_done(ray_local, sources, tmp_path):
    """Real stage folders on a real Ray: a finished one and one killed part way, moved as a tree to
    another parent. The finished one is done where it is now, the other resumes its unfinished
    part only (its finished ones untouched) and records its new place; its counts are the
    undisturbed run's."""
    old = tmp_path / "old/out"
    for name in ("in", "done", "half"):
        (old / name).mkdir(parents=True)
    inputs = []
    for i, source in enumerate(sources):
        inputs.append(str(shutil.copy(source, old / "in" / f"in{i}.txt")))
    assert run_stage(LinesStage(inputs), old / "done", progress=False).ok
    assert run_stage(LinesStage(inputs), old / "half", progress=False).ok
    for marker in ("_SUCCESS", "_parts/part-00003.json", "part-00003.parquet", "_stats.json"):
        (old / "half" / marker).unlink()  # as a run killed before its fourth part finished
    expected, half = folder_bytes(old / "done"), folder_bytes(old / "half")
    new = tmp_path / "moved/to/out"
    new.parent.mkdir(parents=True)
    shutil.move(old, new)
    moved_inputs = [str(new / "in" / f"in{i}.txt") for i in range(len(sources))]
    done = run_stage(LinesStage(moved_inputs), new / "done", progress=False)
    assert done.already_done and folder_bytes(new / "done") == expected
    resumed = run_stage(LinesStage(moved_inputs), new / "half", progress=False)
    assert resumed.ok and not resumed.already_done and resumed.finished_before == len(sources) - 1
    assert json.loads((new / "half/_tasks.json").read_text())["sources"] == moved_inputs  # resumed here: recorded from now on
    after = folder_bytes(new / "half")
    assert {k: after[k] for k in half if k != "_tasks.json"} == {k: v for k, v in half.items() if k != "_tasks.json"}
    assert json.loads(after["_stats.json"]) == json.loads(expected["_stats.json"]) and "part-00003.parquet" in after


def test_a_moved_tree_with_one_input_swapped_is_refused_naming_that_one(tmp_path):
    old, new = tmp_path / "a", tmp_path / "b"
    record = {"stage": "ingest", "settings": {}, "sources": [f"{old}/in/{n}.warc.gz" for n in ("x", "y", "z", "w")]}
    written(old / "out/ingest", record)
    shutil.move(old, new)
    swapped = {**record, "sources": [f"{new}/in/{n}.warc.gz" for n in ("x", "y", "v", "w")]}
    with pytest.raises(StageInputMismatch, match=r"other inputs \(4 then, 4 now; 2 differ\)"):  # z then, v now: not all 8 paths
        check_task_record(new / "out/ingest", swapped, finished=True)
