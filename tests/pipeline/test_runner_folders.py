"""The runner's output-folder contract (runner.run_stage with output_folder.py and task_record.py)
on a real local Ray: --overwrite, folders crawlmill did not write, outputs inside inputs, links,
the record of inputs and settings."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crawlmill.pipeline.parts import PartSink
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.task_record import check_task_record
from crawlmill.pipeline.schema import document_id
from crawlmill.pipeline.stage import PartTask, StageInputMismatch
from tests.conftest import REPO
from tests.pipeline.lines_stage import LinesStage, folder_bytes


def test_overwrite_deletes_the_earlier_output_only_once_the_inputs_are_checked(ray_local, sources, tmp_path):
    """--overwrite (run_stage's `overwrite`) deletes nothing before the stage's inputs are resolved:
    a missing input fails with its own error and the earlier output is as it was."""
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage

    out = tmp_path / "out"
    assert run_stage(LinesStage(sources), out, progress=False).ok
    before = folder_bytes(out)
    with pytest.raises(ValueError, match="nope.warc.gz: no such file or folder"):  # ingest's InputError
        run_stage(IngestStage(IngestConfig(inputs=[str(tmp_path / "nope.warc.gz")])), out, progress=False, overwrite=True)
    assert folder_bytes(out) == before
    with pytest.raises(ValueError):  # a new folder is not even made
        run_stage(IngestStage(IngestConfig(inputs=[str(tmp_path / "nope.warc.gz")])), tmp_path / "new", progress=False, overwrite=True)
    assert not (tmp_path / "new").exists()
    # the same stage over its real earlier output: deleted and made again (not "already done")
    (out / "_work").mkdir()
    (out / "_work/leftover.json").write_text("{}")
    again = run_stage(LinesStage(sources), out, progress=False, overwrite=True)
    assert again.ok and not again.already_done and again.finished_before == 0
    assert folder_bytes(out) == before  # byte-identical, the leftover gone


def test_a_folder_crawlmill_did_not_write_is_neither_written_into_nor_deleted(ray_local, sources, tmp_path):
    from crawlmill.pipeline.output_folder import OutputFolderRefused

    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("years of work")
    (precious / "sub/data.csv").write_text("a,b\n")
    before = folder_bytes(precious)
    with pytest.raises(OutputFolderRefused, match=f"^{precious} is not empty and is not a crawlmill stage output folder "
                       r"\(none of _tasks.json, _SUCCESS, _stats.json, _parts/, _work/ in it\): --overwrite deletes only a folder crawlmill wrote"):  # fmt: skip
        run_stage(LinesStage(sources), precious, progress=False, overwrite=True)
    with pytest.raises(OutputFolderRefused, match="crawlmill writes only into a new or empty folder, or resumes its own output"):
        run_stage(LinesStage(sources), precious, progress=False)  # parts are not mixed into someone's folder either
    assert folder_bytes(precious) == before and sorted(p.name for p in precious.iterdir()) == ["sub", "thesis.txt"]
    (tmp_path / "a-file").write_text("mine")
    with pytest.raises(OutputFolderRefused, match="a-file is a file, not a folder"):
        run_stage(LinesStage(sources), tmp_path / "a-file", progress=False, overwrite=True)
    assert (tmp_path / "a-file").read_text() == "mine"
    (tmp_path / "empty").mkdir()  # an empty folder is fine, with or without --overwrite
    assert run_stage(LinesStage(sources), tmp_path / "empty", progress=False).ok
    (tmp_path / "empty2").mkdir()
    assert run_stage(LinesStage(sources), tmp_path / "empty2", progress=False, overwrite=True).ok


def test_overwrite_refuses_a_stage_folder_that_also_holds_someone_elses_files(ray_local, sources, tmp_path):
    from crawlmill.pipeline.output_folder import OutputFolderRefused

    out = tmp_path / "out"
    assert run_stage(LinesStage(sources), out, progress=False).ok
    for name in ("mydata.csv", "notes", "a.txt", "b.txt", "c.txt", "d.txt"):
        (out / name).write_text("mine")
    with pytest.raises(OutputFolderRefused, match=rf"^{out} holds files crawlmill never writes \(a.txt, b.txt, c.txt, d.txt, mydata.csv and 1 more\): "
                       "--overwrite would delete them with the earlier output"):  # fmt: skip
        run_stage(LinesStage(sources), out, progress=False, overwrite=True)
    assert (out / "mydata.csv").read_text() == "mine" and (out / "_SUCCESS").exists()
    assert run_stage(LinesStage(sources), out, progress=False).already_done  # a resume deletes nothing: it goes on
    for name in ("mydata.csv", "notes", "a.txt", "b.txt", "c.txt", "d.txt"):
        (out / name).unlink()
    (out / ".tmp-0123-part-00009.parquet").write_bytes(b"a killed writer's")  # crawlmill's own: no obstacle
    assert run_stage(LinesStage(sources), out, progress=False, overwrite=True).ok
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "_parts", "_stats.json", "_tasks.json", *[f"part-0000{i}.parquet" for i in range(5)]]


def test_an_output_folder_that_is_holds_or_lies_inside_an_input_is_refused(ray_local, sources, tmp_path):
    """Compared as resolved paths (a symbolic link to the input is the input), with or without
    --overwrite, before anything is written or deleted."""
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.output_folder import OutputFolderRefused
    from tests.conftest import SAMPLES

    warcs = tmp_path / "warcs"
    warcs.mkdir()
    warc = sorted(SAMPLES.glob("crawl-data/*/segments/*/warc/*.warc.gz"))[0]
    (warcs / "a.warc.gz").write_bytes(warc.read_bytes())
    (tmp_path / "link").symlink_to(warcs)
    before = folder_bytes(tmp_path)
    for output, relation, source in [
        (warcs, "is", warcs),
        (tmp_path / "link", "is", warcs),
        (tmp_path, "holds", warcs),
    ]:
        for overwrite in (False, True):
            with pytest.raises(OutputFolderRefused, match=f"ingest: the output folder {output} {relation} its input {source}: a stage never writes where it reads"):
                run_stage(IngestStage(IngestConfig(inputs=[str(warcs)])), output, progress=False, overwrite=overwrite)
    with pytest.raises(OutputFolderRefused, match=f"lines: the output folder {tmp_path} holds its input {sources[0]}"):  # a file it reads
        run_stage(LinesStage(sources), tmp_path, progress=False, overwrite=True)
    assert folder_bytes(tmp_path) == before and not (warcs / "out").exists()
    # ingest inside its input folder (data/ and data/out/ingest): its folder search takes WARC/WET files
    # only, and deleting its output deletes no input (a stage reading folders recursively is refused: test_cli)
    for overwrite in (False, True):
        result = run_stage(IngestStage(IngestConfig(inputs=[str(warcs)])), tmp_path / "link/out", progress=False, overwrite=overwrite)
        assert result.ok and result.stats["in"] > 0 and (warcs / "a.warc.gz").read_bytes() == warc.read_bytes()


def test_inputs_are_compared_as_resolved_paths_and_normalized_urls(tmp_path, monkeypatch):
    from crawlmill.pipeline.output_folder import OutputFolderRefused, check_output_not_input

    monkeypatch.chdir(tmp_path)
    check_output_not_input("s3://bucket/out", ["s3://bucket/in", "s3://bucket/outer/x", "gs://bucket/out", str(tmp_path / "out")], "x")  # apart
    for output, given in [("s3://bucket/out/", "s3://bucket//out/./part-0.parquet"), ("S3://bucket/a/b", "s3://bucket/a/c/../b"),
                          ("s3://bucket/runs/x", "s3://bucket/runs"), ("out", str(tmp_path / "out/../out/part.parquet")),
                          ("./in/sub", "in"), ("tok", "en=tok/a.txt")]:  # fmt: skip
        with pytest.raises(OutputFolderRefused, match="a stage never writes where it reads"):
            check_output_not_input(output, [given], "x")


def test_output_folders_at_a_url_are_checked_as_local_ones():
    """On an object store: a prefix crawlmill did not write is refused, a stage's own is deleted
    by --overwrite unless it holds someone's file; an absent prefix is a new folder."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from crawlmill.pipeline.output_folder import OutputFolderRefused, check_output_folder, reset_output
    from tests.s3server import moto_s3

    with moto_s3("overwrite-test") as (fs, _):
        fs.pipe_file("overwrite-test/precious/thesis.txt", b"years of work")
        fs.pipe_file("overwrite-test/precious/sub/data.csv", b"a,b")
        for overwrite in (False, True):
            with pytest.raises(OutputFolderRefused, match="^s3://overwrite-test/precious is not empty and is not a crawlmill stage output folder"):
                check_output_folder("s3://overwrite-test/precious/", overwrite=overwrite)
        with pytest.raises(OutputFolderRefused, match="^s3://overwrite-test/precious is not empty"):
            reset_output("s3://overwrite-test/precious")
        with pytest.raises(OutputFolderRefused, match="thesis.txt is a file, not a folder"):
            reset_output("s3://overwrite-test/precious/thesis.txt")
        assert fs.cat_file("overwrite-test/precious/thesis.txt") == b"years of work" and fs.exists("overwrite-test/precious/sub/data.csv")
        check_output_folder("s3://overwrite-test/new", overwrite=True)  # nothing there: fine
        for name in ("_tasks.json", "_SUCCESS", "_parts/part-00000.json", "part-00000.parquet", "mydata.csv"):
            fs.pipe_file(f"overwrite-test/out/{name}", b"{}")
        check_output_folder("s3://overwrite-test/out")  # resumed as it is
        with pytest.raises(OutputFolderRefused, match=r"^s3://overwrite-test/out holds files crawlmill never writes \(mydata.csv\)"):
            reset_output("s3://overwrite-test/out")
        fs.rm_file("overwrite-test/out/mydata.csv")
        reset_output("s3://overwrite-test/out")
        assert not fs.exists("overwrite-test/out/_tasks.json") and not fs.exists("overwrite-test/out/part-00000.parquet")


def test_a_workers_own_state_is_walked_by_the_collector_after_its_first_task_only(tmp_path):
    """Before a worker's second task, what its first left (modules, libraries' state) is frozen out of
    the collections run after every task (they walked it all: 60 ms of a small ingest task); every
    task's garbage cycles are still collected, the first task's included. In a fresh process: the
    freeze is for good."""
    probe = textwrap.dedent(f"""
        import gc, json, weakref
        from crawlmill.pipeline.runner import run_task
        class Node:
            pass
        refs, frozen = [], []
        def task():  # a task's garbage: a reference cycle, gone only with a collection
            frozen.append(gc.get_freeze_count())
            a, b = Node(), Node()
            a.other, b.other = b, a
            refs.append(weakref.ref(a))
            return {{"ok": True}}
        for n in range(3):
            run_task(task, (), "{tmp_path}/marker-%d.json" % n, ())
        print(json.dumps([[r() is None for r in refs], frozen, gc.get_freeze_count()]))
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    freed, frozen_at_start, frozen_after = json.loads(done.stdout.strip().splitlines()[-1])
    assert freed == [True, True, True] and frozen_at_start[0] == 0 and frozen_at_start[1] > 10_000, (freed, frozen_at_start)
    assert frozen_at_start[1] == frozen_at_start[2] == frozen_after  # frozen once


def test_overwrite_of_an_output_folder_reached_by_a_symbolic_link_deletes_what_it_points_at(ray_local, tmp_path):
    """`--output out` where out -> /big/disk/out: rmtree refuses a link and said nothing, so the stage
    found its old output and answered "done" to --overwrite. The folder the link names is emptied."""
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from tests.conftest import SAMPLES

    warcs = sorted(str(p) for p in SAMPLES.glob("crawl-data/*/segments/*/warc/*.warc.gz"))
    real, link = tmp_path / "disk/out", tmp_path / "out"
    real.mkdir(parents=True)
    link.symlink_to(real)
    assert run_stage(IngestStage(IngestConfig(inputs=warcs[:1])), link, progress=False).ok
    (real / "_parts/part-00000.json").unlink()  # so a rerun that keeps the folder would redo part 0, not start over
    stale = real / "_work"
    stale.mkdir(exist_ok=True)
    (stale / "left.txt").write_text("from the earlier run")
    result = run_stage(IngestStage(IngestConfig(inputs=warcs[:1])), link, progress=False, overwrite=True)
    assert result.ok and link.is_symlink() and not (stale / "left.txt").exists() and (real / "_SUCCESS").exists()


def test_a_folder_where_nothing_was_written_is_taken_by_the_corrected_command(tmp_path):
    """A command that stopped before any task wrote a thing (a mistyped option) left only its record
    (and `_work/` intermediates): the corrected command, with other settings, takes the folder. Once
    a task has finished (a marker, a part, a quarantine entry), other settings are refused."""
    record = {"stage": "lines", "settings": {"lines": 2}, "sources": ["a"]}
    check_task_record(tmp_path, record)
    (tmp_path / "_work/buckets").mkdir(parents=True)
    (tmp_path / "_work/buckets/part-00000.parquet").write_bytes(b"half")  # a killed task's, unmarked
    corrected = {**record, "settings": {"lines": 3}}
    check_task_record(tmp_path, corrected)
    assert json.loads((tmp_path / "_tasks.json").read_text()) == corrected and not (tmp_path / "_work").exists()
    for finished in ("_work/_done/map/part-00000.json", "_parts/part-00000.json", "_quarantine/part-00000.parquet", "part-00000.parquet"):
        folder = tmp_path / finished.replace("/", "_")
        check_task_record(folder, record)
        (folder / finished).parent.mkdir(parents=True, exist_ok=True)
        (folder / finished).write_text("{}")
        with pytest.raises(StageInputMismatch, match=r"other settings \(lines: 2 -> 3\)"):
            check_task_record(folder, corrected)


def test_a_record_that_is_not_a_stages_is_refused_by_name(tmp_path):
    """A `_tasks.json` that holds no mapping (damaged, or someone's): refused as a mismatch, not a crash."""
    (tmp_path / "_tasks.json").write_text("[1, 2]")
    (tmp_path / "part-00000.parquet").write_bytes(b"PAR1")
    with pytest.raises(StageInputMismatch, match=r"an earlier unknown run with a record this version cannot read"):
        check_task_record(tmp_path, {"stage": "lines", "settings": {}, "sources": []})


def test_a_nested_setting_that_differs_is_named_by_its_path(tmp_path):
    """Ingest's `corpus` settings are an object: the refusal names the field inside it that changed,
    not the first 40 characters of two objects that look the same."""
    corpus = {"names": "047d8ddbceadd3ff", "text_field": "text", "id_field": "id", "url_field": "url"}
    record = {"stage": "ingest", "settings": {"corpus": corpus}, "sources": ["a"]}
    check_task_record(tmp_path, record)
    (tmp_path / "part-00000.parquet").write_bytes(b"written")
    with pytest.raises(StageInputMismatch, match=r'other settings \(corpus.keep_fields: \(none\) -> \["title"\]\)'):
        check_task_record(tmp_path, {**record, "settings": {"corpus": {**corpus, "keep_fields": ["title"]}}})


def test_a_finished_folder_differing_only_in_a_resume_only_setting_stays_done(tmp_path):
    record = {"stage": "lines", "settings": {"lines": 2, "work_format": 1}, "sources": ["a"]}
    check_task_record(tmp_path, record)
    (tmp_path / "part-00000.parquet").write_bytes(b"written")
    newer = {**record, "settings": {"lines": 2, "work_format": 2}}
    check_task_record(tmp_path, newer, ("work_format",), finished=True)
    assert json.loads((tmp_path / "_tasks.json").read_text()) == record  # kept: the output is that run's
    with pytest.raises(StageInputMismatch, match=r"unfinished output of a lines run by an earlier version of crawlmill, whose intermediate files this "
                       r"version cannot resume \(work_format: 1 -> 2; see .*\): pass --overwrite"):  # unfinished: its intermediates are not resumed
        check_task_record(tmp_path, newer, ("work_format",), finished=False)
    with pytest.raises(StageInputMismatch, match="lines: 2 -> 3"):
        check_task_record(tmp_path, {**record, "settings": {"lines": 3, "work_format": 2}}, ("work_format",), finished=True)


class SkippingLines(LinesStage):
    """LinesStage with a setting: lines starting with `skip` are dropped too."""

    def __init__(self, files: list[str], skip: str) -> None:
        super().__init__(files)
        self.skip = skip

    def fingerprint(self) -> dict:
        return {"skip": self.skip}

    def process(self, task: PartTask, sink: PartSink) -> None:
        for n, line in enumerate(Path(task.source).read_text().splitlines()):
            if line.startswith(("#", self.skip)):
                sink.drop("comment")
            else:
                sink.keep({"id": document_id(f"{task.source}:{n}"), "text": line})


class Killed(BaseException):
    pass


def test_an_overwrite_killed_at_any_point_never_leaves_old_parts_a_run_with_other_settings_takes(ray_local, sources, tmp_path, monkeypatch):
    """--overwrite deleted the folder in directory order: killed after `_tasks.json` went but before
    `_parts/`, a run with other settings took the old parts as its finished tasks."""
    import shutil

    from crawlmill.pipeline import output_folder

    old, fresh = tmp_path / "old", tmp_path / "fresh"
    assert run_stage(SkippingLines(sources, "doc 1"), old, progress=False).ok
    assert run_stage(SkippingLines(sources, "doc 2"), fresh, progress=False).ok
    real_remove, kill_points = output_folder._remove, 0
    for kill_at in range(64):
        out = tmp_path / f"killed-{kill_at}"
        shutil.copytree(old, out)
        calls = []

        def dying_remove(path, kill_at=kill_at, calls=calls):
            if len(calls) == kill_at:
                raise Killed
            calls.append(path)
            real_remove(path)

        monkeypatch.setattr(output_folder, "_remove", dying_remove)
        try:
            output_folder.delete_output(out)
        except Killed:
            kill_points += 1
        else:
            break
        finally:
            monkeypatch.setattr(output_folder, "_remove", real_remove)
        try:
            result = run_stage(SkippingLines(sources, "doc 2"), out, progress=False)
        except StageInputMismatch:
            continue  # the record still names the old run: refused until --overwrite finishes the deletion
        assert result.ok and result.finished_before == 0 and folder_bytes(out) == folder_bytes(fresh), kill_at
    assert kill_points >= 5  # _SUCCESS, _parts, _stats.json, parts...


def test_a_record_of_an_earlier_version_without_inputs_and_with_an_older_work_format_stays_done(tmp_path):
    """A finished dedup folder of before inputs were recorded, with `work_format: 1`: each exception
    alone held, the two together were refused."""
    old = {"stage": "dedup", "settings": {"bands": 9, "work_format": 1}, "sources": ["a"]}
    check_task_record(tmp_path, old)
    (tmp_path / "part-00000.parquet").write_bytes(b"written")
    now = {**old, "settings": {"bands": 9, "work_format": 2}, "inputs_made": {"/x/filter": "ab12"}}
    check_task_record(tmp_path, now, ("work_format",), finished=True)
    assert json.loads((tmp_path / "_tasks.json").read_text()) == old
    with pytest.raises(StageInputMismatch, match="work_format: 1 -> 2"):  # unfinished: never resumed on another format
        check_task_record(tmp_path, now, ("work_format",), finished=False)
    same_format = {**now, "settings": old["settings"]}
    check_task_record(tmp_path, same_format, ("work_format",), finished=False)  # resumed: inputs recorded from now on
    assert json.loads((tmp_path / "_tasks.json").read_text()) == same_format
