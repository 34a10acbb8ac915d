"""The `crawlmill` program as users run it: --help everywhere, exit codes, kill-and-resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app

VERBS = ["ingest", "filter", "dedup", "run", "tokenizer train", "tokenizer eval", "pack", "shards", "shards inspect", "shards verify", "shards sample", "shards stats"]  # sub-commands as "group verb"


def crawlmill(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    return subprocess.Popen([sys.executable, "-m", "crawlmill.cli", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_examples(verb):
    result = CliRunner().invoke(app, [*verb.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example" in result.output and f"crawlmill {verb}" in result.output


def test_bad_input_exits_2_with_a_message(tmp_path):
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "nope.warc.gz"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no such file or folder" in result.output
    result = CliRunner().invoke(app, ["ingest", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--dump" in result.output
    result = CliRunner().invoke(app, ["ingest", "--dump", "CC-MAIN-24", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a Common Crawl dump id" in result.output
    (tmp_path / "bad.yaml").write_text("output_dir: o\ningest: {inputs: [x], colour: red}\n")
    result = CliRunner().invoke(app, ["run", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "unknown key(s) colour" in result.output


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_run_resumes_to_byte_identical_output(shared_data, tmp_path):
    page_file = (shared_data / "cc/resiliparse/warcfile.warc.gz").read_bytes() * 12  # ~190 pages a file
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(8):
        (inputs / f"f{i}.warc.gz").write_bytes(page_file)
    args = [str(inputs), "--num-cpus", "1", "--max-in-flight", "1", "--no-progress"]

    reference = tmp_path / "reference"
    done = crawlmill("ingest", *args, "--output", str(reference))
    assert done.wait(timeout=300) == 0, done.stdout.read()

    resumed = tmp_path / "resumed"
    first = crawlmill("ingest", *args, "--output", str(resumed))
    deadline = time.time() + 120
    while not list((resumed / "_parts").glob("*.json")) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=60)
    finished = len(list((resumed / "_parts").glob("*.json")))
    assert 1 <= finished < 8, "the kill should land partway through"
    assert not (resumed / "_SUCCESS").exists()

    second = crawlmill("ingest", *args, "--output", str(resumed))
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    # A worker may still finish the part it was writing as the killed run's Ray shuts down.
    skipped = int(re.search(r"\((\d+) part\(s\) were already finished", output).group(1))
    assert finished <= skipped < 8
    assert folder_bytes(resumed) == folder_bytes(reference)
    stats = json.loads((resumed / "_stats.json").read_text())
    assert stats["kept"] == 8 * 12 * 16
