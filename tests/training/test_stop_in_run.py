"""The pipeline's train stage stopped through its driver (`crawlmill run`, `ray job stop`): the
SIGTERM or Ctrl-C reaches the driver only, and the trainer, in its Ray task, saves the step it is
at and stops; the driver exits 143 (130 for Ctrl-C) saying so, and the rerun resumes from that step."""

import dataclasses
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
from crawlmill.training.stopsignal import StopRequest, TrainingStopped

from .conftest import tiny_config, train_records

pytestmark = pytest.mark.heavy(90)  # seconds on 2 cores


def records(run: Path) -> list[dict]:
    """The train records logged so far (none before the log exists; a line being written is left out)."""
    try:
        return train_records(run)
    except (OSError, ValueError):
        return []


def test_sigterm_to_the_driver_saves_the_step_the_trainer_reached_and_the_rerun_resumes_from_it(tiny_shards, tmp_path):
    out = tmp_path / "out"
    train = {"base": "tiny", "max_steps": 400, "log_interval": 1, "checkpoint": {"every_steps": 2000}, "eval": {"interval": 1000, "iters": 1}}
    out.mkdir()
    (out / "shards").symlink_to(tiny_shards)  # pack's output, where the train stage reads it
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": str(out), "train": train}))
    command = [sys.executable, "-m", "crawlmill.cli", "run", str(tmp_path / "run.yaml"), "--only", "train", "--num-cpus", "2"]  # progress lines in the log
    env = {**os.environ, "RAY_ADDRESS": ""}
    run = out / "train"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        # a session of its own: the signal reaches the driver alone (as `ray job stop`'s does), not its Ray workers
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.time() + 120
    while len(records(run)) < 3:
        assert time.time() < deadline and process.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    status = process.wait(timeout=120)
    message = " ".join((tmp_path / "stderr.txt").read_text().split())
    reached = max(r["step"] for r in train_records(run))
    assert 3 <= reached < 400, message[-3000:]
    assert status == 143, (status, message[-3000:])
    assert (run / "checkpoints" / LATEST).read_text().strip() == f"step-{reached:08d}", message[-3000:]
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["kind"] == "stopped"
    assert f"saved step {reached}" in message and "rerun the same command" in message, message[-3000:]
    assert "part failed" not in message, message[-3000:]  # a stop the user asked for is not reported as a failure
    assert "train: 400 of 400 steps to do" in message, message[-3000:]  # the bar counts steps, not the one task
    assert not list((run / "_work").glob("stop-*")), "the stop request is removed"
    # the rerun resumes from that step (stopped again at once: the test needs no 400 steps)
    with (tmp_path / "stderr2.txt").open("w") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.time() + 120
    while len(records(run)) <= reached + 2:  # a few steps past the checkpoint
        assert time.time() < deadline and process.poll() is None, (tmp_path / "stderr2.txt").read_text()[-3000:]
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGINT)
    status = process.wait(timeout=120)
    message = " ".join((tmp_path / "stderr2.txt").read_text().split())
    assert train_records(run, "resumed")[0]["step"] == reached, message[-3000:]
    assert "no checkpoint yet" not in message
    assert f"train: {reached} of 400 steps already finished" in message, message[-3000:]
    assert status == 130, (status, message[-3000:])
    again = max(r["step"] for r in train_records(run))
    assert (run / "checkpoints" / LATEST).read_text().strip() == f"step-{again:08d}" and again > reached, message[-3000:]


def test_ray_train_workers_stop_on_the_request_too_and_are_not_restarted(ray_local, tiny_shards, tmp_path):
    """Where the train task trains on Ray Train workers (more than one worker, or a cluster with
    GPUs), rank 0 sees the request, every rank saves the same step, and the workers end without a
    failure that Ray Train would restart them after; the task raises TrainingStopped with the step."""
    from crawlmill.training.stage import train_task

    request = StopRequest(str(tmp_path / "stop"))
    request.ask("SIGTERM")  # before the first step: it stops after it
    with pytest.raises(TrainingStopped, match="stopped after step 1, with its checkpoint") as raised:
        train_task(dataclasses.asdict(tiny_config(tiny_shards, max_steps=50, workers=2)), str(tmp_path / "run"), None, request.path)
    assert raised.value.step == 1 and (tmp_path / "run/checkpoints" / LATEST).read_text().strip() == "step-00000001"
    assert json.loads((tmp_path / "run/log.jsonl").read_text().splitlines()[-1]) == {"kind": "stopped", "step": 1, "signal": "SIGTERM", "checkpoint": "step-00000001"}
