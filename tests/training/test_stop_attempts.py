"""A stop asked for through the driver is never answered by a train task that Ray started again from
its last checkpoint (step 0 if none) after the worker training died: that attempt does not train,
and the driver says that the step the stop reached was not saved (stage.py, StopRequest.begin_attempt).
Seen once in a suite: the worker was SIGKILLed after the stop request, Ray's retry trained from step 0
and saved step 1 as the step the stop reached, over the log of the 23 steps the first attempt had logged."""

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from crawlmill.pipeline.ray_tasks import RayOptions
from crawlmill.pipeline.runner import StepFailed
from crawlmill.training.config import load_train_config
from crawlmill.training.stage import NOT_SAVED, StopNotSaved, TrainStage, _begin_attempt, train_task
from crawlmill.training.stopsignal import StopRequest


def test_attempts_are_counted_beside_the_request_and_removed_with_it(tmp_path):
    request = StopRequest(str(tmp_path / "stop-1"))
    assert [request.begin_attempt(), request.begin_attempt()] == [1, 2]
    request.ask("SIGTERM")
    request.remove()
    assert list(tmp_path.iterdir()) == []
    assert StopRequest(None).begin_attempt() is None
    (tmp_path / "stop-2.attempts").write_text("not a count")
    assert StopRequest(str(tmp_path / "stop-2")).begin_attempt() is None  # unknown: the task trains as before


def test_an_attempt_after_the_workers_death_does_not_train_once_the_stop_was_asked(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000007").mkdir(parents=True)
    (run / "checkpoints" / "step-00000007" / "meta.json").write_text(json.dumps({"step": 7}))
    (run / "checkpoints" / "latest").write_text("step-00000007")
    request = StopRequest(str(tmp_path / "stop-1"))
    assert request.begin_attempt() == 1  # the attempt whose worker died
    request.ask("SIGTERM")
    with pytest.raises(StopNotSaved, match=r"died after the stop request \(SIGTERM\).*its last checkpoint: step 7 \(step-00000007\)"):
        train_task({"no": "config: the attempt stops before reading it"}, str(run), None, request.path)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]  # nothing trained, logged or saved
    with pytest.raises(StopNotSaved, match="its last checkpoint: none$"):
        train_task({}, str(tmp_path / "empty"), None, request.path)


def test_an_attempt_after_the_workers_death_says_so_when_no_stop_was_asked(tmp_path, capfd):
    request = StopRequest(str(tmp_path / "stop-1"))
    _begin_attempt(request.path, str(tmp_path / "run"))
    assert capfd.readouterr().err == ""  # the first attempt trains without a word
    _begin_attempt(request.path, str(tmp_path / "run"))
    err = " ".join(capfd.readouterr().err.split())
    assert "attempt 2 of the train task (Ray started it again: the worker of the one before died); it trains from step 0 (no checkpoint was saved yet)" in err


def _stage(tmp_path: Path) -> TrainStage:
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "manifest.json").write_text("{}")
    return TrainStage(load_train_config("tiny", {"data": {"shards": [str(shards)]}}))


@pytest.mark.parametrize("sig, exits", [("SIGTERM", 143), ("SIGINT", 130)])
def test_the_driver_says_the_stops_step_was_lost_and_exits_as_stopped(tmp_path, capfd, sig, exits):
    from crawlmill.pipeline.ray_tasks import TERMINATED, Terminated

    work = tmp_path / "out" / "_work"
    work.mkdir(parents=True)

    def step(*args, **kwargs):  # the driver gets the signal while it waits; the task's second attempt answers
        os.kill(os.getpid(), getattr(signal, sig))
        request = next(p for p in work.iterdir() if not p.name.endswith(".attempts"))
        (work / f"{request.name}.attempts").write_text("2")
        detail = "crawlmill.training.stage.StopNotSaved: " + NOT_SAVED.format(asked=sig, checkpoint="none")
        raise StepFailed("train", [("train", detail)], {})

    ctx = SimpleNamespace(work=work, output=tmp_path / "out", ray_options=RayOptions(), step=step)
    with pytest.raises(KeyboardInterrupt) as raised:
        _stage(tmp_path).run(ctx)
    assert isinstance(raised.value, Terminated) is (exits == 143)
    err = " ".join(capfd.readouterr().err.split())
    assert f"the trainer's worker died after the stop request ({sig}), before it said which step it saved" in err
    assert "rerun the same command to train from step 0 (no checkpoint was saved yet)" in err
    assert "saved step" not in err
    assert list(work.iterdir()) == []  # the request and the attempts' count are removed
    TERMINATED[0] = False


def test_another_failure_after_the_stop_stays_a_failed_task(tmp_path, capfd):
    work = tmp_path / "out" / "_work"
    work.mkdir(parents=True)

    def step(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise StepFailed("train", [("train", "ray.exceptions.WorkerCrashedError: The worker died unexpectedly")], {})

    ctx = SimpleNamespace(work=work, output=tmp_path / "out", ray_options=RayOptions(), step=step)
    with pytest.raises(StepFailed):
        _stage(tmp_path).run(ctx)
    assert "the trainer failed after the stop request (SIGTERM), without saving the step it reached" in capfd.readouterr().err
    assert list(work.iterdir()) == []
