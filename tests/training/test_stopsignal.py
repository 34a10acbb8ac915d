"""training/stopsignal.py: the stop signal's (and Ctrl-C's) handler is installed only while entered and only in
the main thread; ranks agree on every flag that any of them raised (two gloo processes)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from crawlmill.training.stopsignal import ForwardStop, StopOnSignal, StopRequest, any_rank


def test_the_handler_sets_the_flag_while_entered_and_the_previous_one_comes_back():
    received = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: received.append("previous"))
    try:
        with StopOnSignal("SIGUSR1") as stop:
            assert stop.installed and not stop.received
            os.kill(os.getpid(), signal.SIGUSR1)
            assert stop.received and received == []  # the run goes on: the loop decides when to stop
        os.kill(os.getpid(), signal.SIGUSR1)
        assert received == ["previous"]
        with StopOnSignal(None) as stop:  # stop signals off: Ctrl-C too
            assert not stop.installed and signal.getsignal(signal.SIGINT) is not stop._handle
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_first_ctrl_c_asks_for_the_stop_a_second_interrupts(capfd):
    """SIGINT beside the stop signal: the first sets the flag and says so; the second raises
    KeyboardInterrupt; the previous handler is back afterwards. An ignored SIGINT stays ignored."""
    previous = signal.getsignal(signal.SIGINT)
    for name in ("SIGTERM", "SIGINT"):
        with StopOnSignal(name) as stop:
            assert stop.installed and not stop.received
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.received and stop.which == "SIGINT"
            assert "SIGINT: a checkpoint at the end of this step, then the run stops" in capfd.readouterr().err
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is previous
    with StopOnSignal("SIGUSR1") as stop:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.which == "SIGUSR1" and stop.received  # the first that came
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopOnSignal("SIGTERM") as stop:
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop.received and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_driver_forwards_the_first_signal_as_a_stop_request_and_a_second_interrupts(tmp_path, capfd):
    """ForwardStop (the train stage's driver): the first SIGTERM or Ctrl-C writes the stop request
    the trainer polls, and the driver goes on; a second interrupts it at once (Terminated after a
    SIGTERM: exit 143; KeyboardInterrupt after Ctrl-C: 130); the previous handlers come back."""
    from crawlmill.pipeline import ray_tasks
    from crawlmill.pipeline.ray_tasks import Terminated

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    for first, second, unwinds in [("SIGTERM", "SIGTERM", Terminated), ("SIGINT", "SIGINT", KeyboardInterrupt), ("SIGTERM", "SIGINT", KeyboardInterrupt)]:
        path = tmp_path / f"stop-{first}-{second}"
        trainer = StopRequest(str(path), every_seconds=0)
        assert trainer.asked() is None
        ray_tasks.TERMINATED[0] = False
        with ForwardStop(StopRequest(str(path))) as forward:
            os.kill(os.getpid(), getattr(signal, first))
            assert forward.which == first and path.read_text() == first and trainer.asked() == first
            assert f"{first}: the trainer saves a checkpoint at the end of its step, then the run stops" in capfd.readouterr().err
            with pytest.raises(KeyboardInterrupt) as raised:
                os.kill(os.getpid(), getattr(signal, second))
            assert type(raised.value) is unwinds and type(forward.interrupt()) is unwinds
            assert f"{second}: stopping now, without a checkpoint" in capfd.readouterr().err
            # Raised inside ray.wait, a Terminated comes out as a plain KeyboardInterrupt: the flag keeps it 143.
            assert ray_tasks.TERMINATED[0] is (unwinds is Terminated)
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
        forward.request.remove()
        assert not path.exists()
    ray_tasks.TERMINATED[0] = False


def test_a_stop_request_is_looked_for_at_most_once_a_second(tmp_path):
    request = StopRequest(str(tmp_path / "stop"))
    assert request.asked() is None
    StopRequest(str(tmp_path / "stop")).ask("SIGTERM")
    assert request.asked() is None  # not looked for again yet
    request._last -= 1
    assert request.asked() == "SIGTERM" and StopRequest(None).asked() is None


def test_outside_the_main_thread_no_handler_is_installed():
    found = []
    thread = threading.Thread(target=lambda: found.append(StopOnSignal("SIGTERM").__enter__().installed))
    thread.start()
    thread.join()
    assert found == [False]


def _agree(rank: int, root: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{root / 'store'}", rank=rank, world_size=2)
    try:
        mine = [[True, False, False], [False, True, False]][rank]  # the signal on rank 0 only, the clock on rank 1
        (root / f"rank-{rank}.json").write_text(json.dumps(any_rank(mine, torch.device("cpu"))))
    finally:
        dist.destroy_process_group()


def test_ranks_agree_on_any_flag_any_rank_raised(tmp_path: Path):
    torch.multiprocessing.spawn(_agree, args=(tmp_path,), nprocs=2)
    assert [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)] == [[True, True, False]] * 2
    assert any_rank([True, False], torch.device("cpu")) == [True, False]  # no process group: its own flags
