"""One writer per output folder on a machine (pipeline/folder_lock.py): a second run into a folder
another process is writing stops at once, exit status 1, naming the holder; a killed holder leaves
nothing locked; a folder that runs read is not rewritten under them, and readers share it."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.folder_lock import OutputFolderBusy, output_lock
from crawlmill.pipeline.runner import run_stage
from tests.conftest import REPO
from tests.pipeline.lines_stage import LinesStage

HOLDER = textwrap.dedent(
    """
    import sys, time
    from crawlmill.pipeline.folder_lock import output_lock
    with output_lock(sys.argv[1], reading=sys.argv[2:] == ["reading"]):
        print("held", flush=True)
        time.sleep(600)
    """
)


@pytest.fixture
def held(tmp_path):
    """Another process writing `tmp_path / "out"` (through a symbolic link to it: the same folder)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "link")], cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert holder.stdout.readline().strip() == "held"
    yield holder
    holder.kill()
    holder.wait()


def test_a_second_run_into_a_folder_being_written_is_refused_and_a_killed_holder_frees_it(ray_local, held, tmp_path):
    """Two `crawlmill run`s of one config (or an Airflow retry beside a job still running) each
    removed the other's temporaries as a killed run's and wrote the same parts."""
    source = tmp_path / "in.txt"
    source.write_text("doc 1\ndoc 2\n")
    with pytest.raises(OutputFolderBusy, match=rf"another crawlmill run on this machine is writing it \(pid {held.pid}, since "):
        run_stage(LinesStage([str(source)]), tmp_path / "out", progress=False)
    assert not any((tmp_path / "out").iterdir())  # refused before anything was written or deleted
    held.send_signal(signal.SIGKILL)
    held.wait()
    assert run_stage(LinesStage([str(source)]), tmp_path / "out", progress=False).ok
    with output_lock(tmp_path / "out"):  # released at the end of a run
        pass


def test_the_command_line_says_busy_with_exit_status_1(ray_local, held, tmp_path):
    """Exit 1 as failed tasks (rerun once the other has ended), not 2: nothing is wrong with the command."""
    result = CliRunner().invoke(app, ["ingest", str(REPO / "samples"), "--output", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1 and "another crawlmill run on this machine is writing it" in " ".join(result.output.split())


def test_a_run_refused_by_the_lock_leaves_the_other_runs_summary_alone(ray_local, tmp_path):
    """Before, the refused run wrote its own _run.json (ok false, "stopped in ingest") into the
    output of the run that holds the folder."""
    import yaml

    out = tmp_path / "run"
    (out / "ingest").mkdir(parents=True)
    (out / "_run.json").write_text('{"the other run": true}')
    holder = _hold(out / "ingest")
    try:
        (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": str(out), "ingest": {"inputs": [str(REPO / "samples/crawl-data")]}}))
        result = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--only", "ingest", "--no-progress"])
        assert result.exit_code == 1 and "another crawlmill run on this machine is writing it" in " ".join(result.output.split())
        assert (out / "_run.json").read_text() == '{"the other run": true}'
    finally:
        holder.kill()
        holder.wait()


def _hold(folder, *how):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), *how], cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_folder_a_run_reads_is_not_rewritten_under_it_and_readers_share_it(ray_local, tmp_path):
    """`--only ingest --overwrite` while a filter run read ingest deleted the parts it was reading."""
    from tests.pipeline.toy_stage import ToyConfig, ToyStage

    source = tmp_path / "in.txt"
    source.write_text("doc 1\ndoc 2\n")
    first = tmp_path / "first"
    assert run_stage(LinesStage([str(source)]), first, progress=False).ok
    reader = _hold(first, "reading")
    try:
        with pytest.raises(OutputFolderBusy, match="another crawlmill run on this machine reads it as its input"):
            run_stage(LinesStage([str(source)]), first, progress=False, overwrite=True)
        assert (first / "_SUCCESS").exists()  # refused before the deletion
        assert run_stage(ToyStage(ToyConfig(inputs=[str(first)])), tmp_path / "second", progress=False).ok  # two readers at once
    finally:
        reader.kill()
        reader.wait()
    writer = _hold(first)
    try:
        with pytest.raises(OutputFolderBusy, match=rf"{first}: another crawlmill run on this machine is writing it \(pid {writer.pid}"):
            run_stage(ToyStage(ToyConfig(inputs=[str(first)])), tmp_path / "third", progress=False)
    finally:
        writer.kill()
        writer.wait()
    assert run_stage(LinesStage([str(source)]), first, progress=False, overwrite=True).ok  # nobody reads it now
