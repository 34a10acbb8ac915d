"""`crawlmill train` killed mid-run (SIGKILL, SIGTERM, Ctrl-C) and resumed with --resume: the run
matches the undisturbed one step for step and weight for weight."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from crawlmill.training.checkpoint import LATEST

from .conftest import final_weights, same_weights, train_records

pytestmark = pytest.mark.heavy(90)  # seconds on 2 cores: runs first (tests/conftest.py)


# 40 steps, a checkpoint every 10: the kill comes once step 10's is complete (an asynchronous save
# completes at the next one: step 20), with 20 steps or more left; the evaluation at 30 comes after the resume.
KILLED_RUN = {"base": "tiny", "max_steps": 40, "log_interval": 1, "checkpoint": {"every_steps": 10, "keep": 2}, "eval": {"interval": 30, "iters": 1}}


def train_command(config: dict, tmp_path: Path, run_dir: Path, *more: str) -> list[str]:
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "crawlmill.cli", "train", "--config", str(tmp_path / "run.yaml"), "--output", str(run_dir), "--no-progress", *more]


@pytest.fixture(scope="module")
def undisturbed_run(tiny_shards, tmp_path_factory) -> Path:
    """The straight run the killed runs must match, once for both save modes (how a checkpoint is
    written does not change training: test_stopped_and_resumed_run_is_bitwise_the_straight_run);
    in this process, as `crawlmill train` without workers runs it (test_urls.py matches such a run
    bit for bit with a resumed `crawlmill train` process too)."""
    from crawlmill.training.config import load_train_config
    from crawlmill.training.trainer import train

    run_dir = tmp_path_factory.mktemp("undisturbed") / "run"
    train(load_train_config(KILLED_RUN["base"], {**{k: v for k, v in KILLED_RUN.items() if k != "base"}, "data": {"shards": [str(tiny_shards)]}}), run_dir)
    return run_dir


# SIGKILL (a crash) with asynchronous saves: it may land while the forked writer writes; SIGTERM (a
# preemption's warning) with synchronous ones: the run saves the step it reached and exits 1; SIGINT
# (Ctrl-C, to the whole process group) likewise, with asynchronous saves: their helper processes outlive it.
@pytest.mark.parametrize("how, async_save", [("SIGKILL", "always"), ("SIGTERM", "gpu"), ("SIGINT", "always")])
def test_a_killed_run_resumes_from_its_last_checkpoint_and_matches_the_undisturbed_run(tiny_shards, undisturbed_run, tmp_path, how, async_save):
    config = {**KILLED_RUN, "data": {"shards": [str(tiny_shards)]}, "checkpoint": {**KILLED_RUN["checkpoint"], "async_save": async_save}}
    env = {**os.environ, "RAY_ADDRESS": ""}

    def command(run_dir: Path, *more: str) -> list[str]:
        return train_command(config, tmp_path, run_dir, *more)

    killed = tmp_path / "killed"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.time() + 300
    while not (killed / "checkpoints/step-00000010/meta.json").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, getattr(signal, how))
    status = process.wait(timeout=120)
    steps_before = max(r["step"] for r in train_records(killed))
    assert 10 <= steps_before < 40, "the kill should land mid-run"
    if how != "SIGKILL":  # the step reached is saved; the message says how to go on
        message = " ".join((tmp_path / "stderr.txt").read_text().split())
        assert status == 1 and f"{how} received: stopped after step {steps_before} of 40" in message and "--resume" in message, message[-2000:]
        assert (killed / "checkpoints" / LATEST).read_text().strip() == f"step-{steps_before:08d}"
        assert json.loads((killed / "log.jsonl").read_text().splitlines()[-1]) == {
            "kind": "stopped", "step": steps_before, "signal": how, "checkpoint": f"step-{steps_before:08d}"}  # fmt: skip
    resumed = subprocess.run(command(killed, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [(r["step"], r["loss"]) for r in train_records(killed)] == [(r["step"], r["loss"]) for r in train_records(undisturbed_run)]
    assert same_weights(final_weights(killed), final_weights(undisturbed_run))
    assert sorted(p.name for p in (killed / "checkpoints").glob("step-*")) == ["step-00000030", "step-00000040"]  # keep 2
