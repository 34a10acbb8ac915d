"""An output moved or copied with the folders it reads resumes where it is now, and its finished
stages stay done (pipeline/relocation.py, task_record.py); before, every stage of a moved output was
refused as made from other inputs, with no way on but --overwrite."""

import json
import shutil

import pytest

from crawlmill.pipeline.relocation import moved_roots, relocate, relocated_record
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageInputMismatch
from crawlmill.pipeline.task_record import check_task_record
from tests.pipeline.lines_stage import LinesStage, folder_bytes


def test_the_roots_are_the_paths_without_their_common_last_names():
    assert moved_roots("/tmp/a/out/filter", "/data/out/filter") == ("/tmp/a", "/data")
    assert moved_roots("/tmp/a/out/filter", "/tmp/b/out/filter") == ("/tmp/a", "/tmp/b")
    assert moved_roots("/x/out/CC-MAIN-2024-10/filter", "/y/z/out/CC-MAIN-2024-10/filter") == ("/x", "/y/z")
    assert moved_roots("s3://bucket/runs/out/dedup", "/local/out/dedup") == ("s3://bucket/runs", "/local")  # synced down
    assert moved_roots("/tmp/a/run1", "/tmp/a/run2") == ("/tmp/a/run1", "/tmp/a/run2")  # a folder renamed
    assert moved_roots("/tmp/a/out/filter", "/tmp/a/out/filter") is None


def test_only_paths_under_the_old_root_move():
    record = {"sources": ["/tmp/a/out/ingest/part-00000.parquet", "/data/cc/x.warc.gz", "/tmp/ab/y"], "inputs_made": {"/tmp/a/out/ingest": "d1"},
              "settings": {"index": "/tmp/a/out/dedup/_index", "n": 3, "name": "/tmp/a"}}  # fmt: skip
    assert relocate(record, "/tmp/a", "/data/b") == {
        "sources": ["/data/b/out/ingest/part-00000.parquet", "/data/cc/x.warc.gz", "/tmp/ab/y"],  # /tmp/ab is not under /tmp/a
        "inputs_made": {"/data/b/out/ingest": "d1"},
        "settings": {"index": "/data/b/out/dedup/_index", "n": 3, "name": "/data/b"},
    }
    assert relocated_record({"sources": ["/tmp/a/x"]}, "/data/out/filter") == {"sources": ["/tmp/a/x"]}  # no folder recorded: as it is


def record_at(root, stage="filter"):
    return {"stage": stage, "settings": {"lines": 2}, "sources": [f"{root}/out/ingest/part-00000.parquet", "/data/cc/a.warc.gz"],
            "inputs_made": {f"{root}/out/ingest": "6afbd1ecaee36f88"}, "output": f"{root}/out/{stage}"}  # fmt: skip


@pytest.mark.parametrize("finished", [True, False])
def test_a_record_moved_with_its_inputs_is_the_same_record(tmp_path, finished):
    old, new = tmp_path / "a", tmp_path / "b"
    (old / "out/filter").mkdir(parents=True)
    check_task_record(old / "out/filter", record_at(old))
    (old / "out/filter/part-00000.parquet").write_bytes(b"written")
    shutil.move(old, new)
    check_task_record(new / "out/filter", record_at(new), finished=finished)
    written = json.loads((new / "out/filter/_tasks.json").read_text())
    # finished: kept as it was (readers of it hold a digest of it); resumed: what it reads from now on
    assert written == (record_at(old) if finished else record_at(new))


def test_a_folder_moved_alone_reads_its_inputs_where_they_are_and_other_inputs_are_refused(tmp_path):
    old = tmp_path / "a"
    (old / "out/filter").mkdir(parents=True)
    check_task_record(old / "out/filter", record_at(old))
    (old / "out/filter/part-00000.parquet").write_bytes(b"written")
    shutil.move(old / "out/filter", tmp_path / "elsewhere")
    same_inputs = {**record_at(old), "output": str(tmp_path / "elsewhere")}  # they stayed where they were
    check_task_record(tmp_path / "elsewhere", same_inputs, finished=True)
    other_crawl = {**same_inputs, "sources": [f"{old}/out/ingest/part-00000.parquet", "/data/cc/b.warc.gz"]}
    with pytest.raises(StageInputMismatch, match="other inputs"):
        check_task_record(tmp_path / "elsewhere", other_crawl, finished=True)
    moved_copy = {**record_at(tmp_path / "b"), "output": str(tmp_path / "elsewhere")}  # inputs elsewhere, the folder not under them
    with pytest.raises(StageInputMismatch, match="other inputs"):
        check_task_record(tmp_path / "elsewhere", moved_copy, finished=True)


def test_a_record_of_an_earlier_version_naming_no_folder_is_compared_as_before(tmp_path):
    legacy = {k: v for k, v in record_at(tmp_path).items() if k != "output"}
    (tmp_path / "f").mkdir()
    check_task_record(tmp_path / "f", legacy)
    (tmp_path / "f/part-00000.parquet").write_bytes(b"written")
    check_task_record(tmp_path / "f", record_at(tmp_path), finished=True)  # the same inputs: done, as it was
    assert json.loads((tmp_path / "f/_tasks.json").read_text()) == legacy


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
    record = json.loads((new / "half/_tasks.json").read_text())
    assert record["output"] == str(new / "half") and record["sources"] == moved_inputs
    after = folder_bytes(new / "half")
    assert {k: after[k] for k in half if k != "_tasks.json"} == {k: v for k, v in half.items() if k != "_tasks.json"}
    assert json.loads(after["_stats.json"]) == json.loads(expected["_stats.json"]) and "part-00003.parquet" in after
