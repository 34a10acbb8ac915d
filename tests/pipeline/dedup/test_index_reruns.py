"""Running a run of a dedup index (`--index DIR`) again: only its last run may be recomputed; a
finished earlier run is skipped as done; each run's stored rows are read from the folder its
manifest entry records, whatever its place in the manifest. Real Ray, the sample corpus's two dumps."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.dedup import index
from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.dedup.shingles import TEXT_FORMAT
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.output_folder import OutputFolderRefused
from crawlmill.pipeline.runner import run_stage
from tests.pipeline.dedup.conftest import DUMPS, folder_bytes



def kept_ids(folder):
    return set(pq.read_table([str(p) for p in sorted(folder.glob("part-*.parquet"))], columns=["id"]).column("id").to_pylist())


def dedup(ingested, dump, out, index_dir, overwrite=False):
    stage = DedupStage(DedupConfig(inputs=[str(ingested / dump)], partitions=4, index=str(index_dir)))
    return run_stage(stage, out, progress=False, overwrite=overwrite)


@pytest.fixture(scope="module")
def made_runs(ingested, tmp_path_factory):
    """An index of two runs, made once per module: `first` (the earlier dump), then `second`
    against it; and a pristine copy of the three folders."""
    root = tmp_path_factory.mktemp("runs")
    assert dedup(ingested, DUMPS[0], root / "first", root / "index").ok
    assert dedup(ingested, DUMPS[1], root / "second", root / "index").ok
    pristine = tmp_path_factory.mktemp("pristine") / "runs"
    shutil.copytree(root, pristine, symlinks=True)
    return root, pristine


@pytest.fixture
def two_runs(made_runs):
    """The two runs as made, for each test, where they were made (the index and the outputs record
    their absolute folders): whatever an earlier test changed is put back from the pristine copy."""
    root, pristine = made_runs
    shutil.rmtree(root)
    shutil.copytree(pristine, root, symlinks=True)
    return root, root / "index"


def test_recomputing_an_earlier_run_is_refused_and_the_index_is_untouched(ingested, two_runs):
    root, index_dir = two_runs
    before, output_before = folder_bytes(index_dir), folder_bytes(root / "first")
    with pytest.raises(OutputFolderRefused) as refused:  # index.IndexRerunRefused; exit status 2 in the CLI
        dedup(ingested, DUMPS[0], root / "first", index_dir, overwrite=True)
    assert isinstance(refused.value, index.IndexRerunRefused)
    message = str(refused.value)
    assert "run 1 of 2" in message and str(index_dir) in message and str((root / "second").resolve()) in message
    assert "new --index" in message and "last run" in message  # what to do instead
    assert folder_bytes(index_dir) == before  # neither the manifest nor any run's stored rows changed
    assert folder_bytes(root / "first") == output_before  # nor the parts the second run verifies against (refused before --overwrite deletes)


def test_an_unfinished_earlier_run_is_refused_before_anything_is_written(ingested, two_runs):
    root, index_dir = two_runs
    (root / "first/_SUCCESS").unlink()  # it would be computed again, not skipped
    before = {p: p.read_bytes() for folder in (root / "first", index_dir) for p in sorted(folder.rglob("*")) if p.is_file()}
    with pytest.raises(OutputFolderRefused, match="run 1 of 2"):
        dedup(ingested, DUMPS[0], root / "first", index_dir)
    assert {p: p.read_bytes() for folder in (root / "first", index_dir) for p in sorted(folder.rglob("*")) if p.is_file()} == before


def test_a_finished_earlier_run_is_skipped_as_done_when_run_again(ingested, two_runs):
    root, index_dir = two_runs
    before = folder_bytes(root / "first")
    result = dedup(ingested, DUMPS[0], root / "first", index_dir)
    assert result.ok and result.already_done
    assert folder_bytes(root / "first") == before


def test_the_last_run_is_resumed_and_recomputed_in_place(ingested, two_runs):
    """The index's last run, unfinished (what an interrupted append runs again) or with
    --overwrite, gives the same output and index: its entry and stored rows stay where they were."""
    root, index_dir = two_runs
    output, stored = folder_bytes(root / "second"), folder_bytes(index_dir)
    (root / "second/_SUCCESS").unlink()  # killed after it was added to the index
    resumed = dedup(ingested, DUMPS[1], root / "second", index_dir)
    assert resumed.ok and not resumed.already_done
    assert folder_bytes(root / "second") == output and folder_bytes(index_dir) == stored
    assert dedup(ingested, DUMPS[1], root / "second", index_dir, overwrite=True).ok
    assert folder_bytes(root / "second") == output
    assert folder_bytes(index_dir) == stored
    assert [run["dir"] for run in json.loads((index_dir / "manifest.json").read_text())["runs"]] == ["run-0000", "run-0001"]


def test_stored_rows_are_read_from_the_recorded_folder(ingested, two_runs):
    """Each run's rows come from its entry's `dir`, not from its place: a third run against the
    index finds every document the first two kept (and removes its copy of each)."""
    root, index_dir = two_runs
    manifest = json.loads((index_dir / "manifest.json").read_text())
    (index_dir / "run-0000").rename(index_dir / "run-0007")
    manifest["runs"][0]["dir"] = "run-0007"
    (index_dir / "manifest.json").write_text(json.dumps(manifest))
    third = dedup(ingested, DUMPS[1], root / "third", index_dir)  # the later dump once more: nothing new
    assert third.ok
    earlier = kept_ids(root / "first") | kept_ids(root / "second")
    assert json.loads((root / "third/_report/report.json").read_text())["indexed_documents"] == len(earlier)
    assert kept_ids(root / "third").isdisjoint(earlier)
    runs = json.loads((index_dir / "manifest.json").read_text())["runs"]
    assert [run["dir"] for run in runs] == ["run-0007", "run-0001", "run-0002"]  # a new run's folder is one no entry uses
    assert sorted(p.name for p in index_dir.iterdir()) == ["manifest.json", "run-0001", "run-0002", "run-0007"]


def test_an_index_written_before_dirs_were_recorded(ingested, two_runs):
    """Entries without `dir` name their rows by position, as they were saved; the folders made
    against such an index stay done; the next write records every entry's folder."""
    root, index_dir = two_runs
    manifest = json.loads((index_dir / "manifest.json").read_text())
    old = {"runs": [{"output": run["output"], "parts": run["parts"]} for run in manifest["runs"]]}
    (index_dir / "manifest.json").write_text(json.dumps(old))
    for name, dump in (("first", DUMPS[0]), ("second", DUMPS[1])):  # records written before the work and text formats were
        record = json.loads((root / name / "_tasks.json").read_text())
        assert record["settings"].pop("work_format") and record["settings"].pop("text_format") == 2
        (root / name / "_tasks.json").write_text(json.dumps(record))
        assert dedup(ingested, dump, root / name, index_dir).already_done
    stored = folder_bytes(index_dir / "run-0001")
    assert dedup(ingested, DUMPS[1], root / "second", index_dir, overwrite=True).ok
    assert folder_bytes(index_dir / "run-0001") == stored  # the last run again: its rows where they were
    # Such a manifest is older than text formats too: its runs keep format 1, recorded from now on.
    first, second = ({k: v for k, v in run.items() if k != "text_format"} for run in manifest["runs"])
    assert json.loads((index_dir / "manifest.json").read_text()) == {"text_format": 1, "index": str(index_dir.resolve()), "runs": [first, {**second, "text_format": 1}]}
    assert json.loads((root / "second/_report/report.json").read_text())["text_format"] == 1
    with pytest.raises(OutputFolderRefused, match="run 1 of 2"):  # an earlier run, however the manifest was written
        dedup(ingested, DUMPS[0], root / "first", index_dir, overwrite=True)


def test_run_dirs_of_a_manifest(tmp_path):
    runs = [{"output": "/a", "parts": []}, {"output": "/b", "parts": [], "dir": "run-0005"}, {"output": "/c", "parts": []}]
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": runs}))
    loaded = index.load_manifest(tmp_path)
    assert [run["dir"] for run in loaded] == ["run-0000", "run-0005", "run-0002"]  # without one: its place
    assert index.new_run_dir(loaded) == "run-0003"
    assert index.new_run_dir([{"dir": "run-0001"}, {"dir": "run-0002"}]) == "run-0003"
    assert index.run_position(loaded, "/b") == 1 and index.run_position(loaded, "/d") is None
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": [{"output": "/a", "parts": [], "dir": "../elsewhere"}]}))
    with pytest.raises(ValueError, match="leaves the folder"):  # a manifest is data: its dirs stay in the index
        index.load_manifest(tmp_path)


def test_text_format_of_an_index(tmp_path):
    """A new or empty index takes the current format; one written before formats were recorded
    keeps format 1; one from a newer crawlmill is refused."""
    assert index.text_format_of(tmp_path) == TEXT_FORMAT
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": []}))
    assert index.text_format_of(tmp_path) == TEXT_FORMAT
    runs = [{"output": "/a", "parts": []}]
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": runs}))
    assert index.text_format_of(tmp_path) == 1
    (tmp_path / "manifest.json").write_text(json.dumps({"text_format": 2, "runs": runs}))
    assert index.text_format_of(tmp_path) == 2
    (tmp_path / "manifest.json").write_text(json.dumps({"text_format": 7, "runs": runs}))
    with pytest.raises(ValueError, match="manifest.json: dedup text format 7"):
        index.text_format_of(tmp_path)
    # A crawlmill before formats were recorded appended a run to an index of format 2 (it rewrote the
    # manifest without the key): the runs' documents do not compare, and the index says so.
    mixed = [{"output": "/a", "parts": [], "text_format": 2}, {"output": "/b", "parts": []}]
    (tmp_path / "manifest.json").write_text(json.dumps({"runs": mixed}))
    with pytest.raises(ValueError, match=r"different text formats \(/a: 2, /b: 1; a crawlmill before 2026-12"):
        index.text_format_of(tmp_path)


def test_an_index_moved_with_its_runs_outputs_dedups_the_next_dump_as_where_it_was_made(ingested, two_runs, tmp_path):
    """The first run and its index moved together (relocation.py): the second dump's run against
    the moved index keeps exactly what it kept against the index where it was made, reading the
    first run's parts where they are now; the first run, run again there, is done."""
    root, _ = two_runs
    old = tmp_path / "made"
    assert dedup(ingested, DUMPS[0], old / "first", old / "index").ok
    new = tmp_path / "moved/elsewhere"
    new.parent.mkdir()
    old.rename(new)
    assert dedup(ingested, DUMPS[0], new / "first", new / "index").already_done
    assert dedup(ingested, DUMPS[1], new / "second", new / "index").ok
    assert kept_ids(new / "second") == kept_ids(root / "second") and kept_ids(new / "second") != kept_ids(root / "first")
    manifest = json.loads((new / "index/manifest.json").read_text())
    assert manifest["index"] == str((new / "index").resolve())
    assert [run["output"] for run in manifest["runs"]] == [str((new / "first").resolve()), str((new / "second").resolve())]
