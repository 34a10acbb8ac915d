"""Checkpoint and stop on a signal: a preempted run (Kubernetes and Slurm send SIGTERM, Slurm's
`--signal=USR1@120` a chosen one, ahead of the kill) saves the step it is at instead of losing up
to `checkpoint.every_minutes` of work.

The handler only sets a flag (`received`); after every step the ranks agree on it through one
all-reduce (`any_rank`, with the time-based checkpoint decision), so every rank saves the same step
even when the signal reached only some of them (torchrun forwards it to every worker; a node's
agent may not).
Ctrl-C (SIGINT) does the same, unless stop signals are off (`null`) or SIGINT is ignored (a
background job): a checkpoint at the end of the step, a message saying so at once; a second Ctrl-C
interrupts at once (KeyboardInterrupt, the steps since the last checkpoint lost). Handlers can be installed only in a process's main thread: where
training runs in another (Ray Train's workers) the stop is not offered and a signal keeps its usual
effect.

    with StopOnSignal("SIGTERM") as stop:
        for step in ...:
            ...
            stopping, by_time = any_rank([stop.received, by_time], device)
            if stopping:
                save(step); raise TrainingStopped(...)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist


class TrainingStopped(RuntimeError):
    """A stop signal arrived: the run saved a checkpoint at the step it was at and stopped; `step`,
    where set, is that step (an attribute: it survives pickling, as from a Ray task)."""

    step: int | None = None


class StopOnSignal:
    """Sets `received` when the named signal or a first SIGINT arrives (None: nothing installed),
    while entered; `which` names the first that did."""

    def __init__(self, name: str | None) -> None:
        self.signums = tuple(signal.Signals[n] for n in self.signals(name))
        self.received = False
        self.which: str | None = None
        self._interrupted = False
        self._previous: dict[int, Any] = {}

    @staticmethod
    def signals(name: str | None) -> tuple[str, ...]:
        """The signals a run with the stop signal `name` stops on."""
        return tuple(dict.fromkeys([name, "SIGINT"])) if name else ()

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            if self._interrupted:  # the second Ctrl-C
                raise KeyboardInterrupt
            self._interrupted = True
            # os.write: print could be inside a write to the same stream when the signal came
            os.write(2, b"\nSIGINT: a checkpoint at the end of this step, then the run stops (Ctrl-C again: stop now, losing the steps since the last checkpoint)\n")
        self.which = self.which or signal.Signals(signum).name
        self.received = True

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            # an ignored SIGINT (a background job's) stays ignored
            wanted = [s for s in self.signums if not (s == signal.SIGINT and signal.getsignal(s) == signal.SIG_IGN)]
            self._previous = {signum: signal.signal(signum, self._handle) for signum in wanted}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class StopRequest:
    """A stop asked for through a file, for a trainer that no signal reaches: the pipeline's train
    stage trains in a Ray task (on another node, maybe), and a SIGTERM (`ray job stop`, Kubernetes)
    or a Ctrl-C reaches its driver only. The driver writes the file (`ask`, ForwardStop) in the run
    folder, shared storage or a URL; rank 0 looks for it (`asked`) at the end of a step, at most once
    every `every_seconds` (a request to the store, not one per step), and the ranks agree on it with
    the signal flag (any_rank). The file's name is new for each attempt (the driver's), so that one
    left by a driver that was killed does not stop a later run.

    Ray starts a task again, with the same arguments, when its worker process dies (max_retries):
    `begin_attempt` counts the task's attempts in a file beside the request, so that an attempt
    that finds the request already there knows whether it is such a second one (training.stage:
    it does not train). Seen in a test suite: the worker was killed from outside (SIGKILL: no word
    in its logs) after the stop request, and the attempt Ray started trained from step 0 (no
    checkpoint yet), saw the request after its first step and saved step 1 as the step reached.
    Not counted: a worker group that Ray Train restarts within one attempt (max_restarts, a
    preempted node) resumes from the last checkpoint, sees the request and saves its first step:
    a real checkpoint, though not the step the stop first reached."""

    def __init__(self, path: str | None, every_seconds: float = 1.0) -> None:
        self.path, self.every_seconds = path, every_seconds
        self._last = float("-inf")
        self.which: str | None = None

    def asked(self) -> str | None:
        """The signal the driver received (what the file says) once it was asked for, else None."""
        if self.path is None or self.which is not None:
            return self.which
        now = time.monotonic()
        if now - self._last < self.every_seconds:
            return None
        self._last = now
        from crawlmill.files import as_path

        try:
            path = as_path(self.path)
            if path.exists():
                self.which = path.read_text().strip() or "a stop request"
        except OSError:  # the store did not answer this time: asked again at a later step
            pass
        return self.which

    def ask(self, name: str) -> None:
        from crawlmill.files import atomic_write_text

        atomic_write_text(self.path, name)

    @property
    def attempts_path(self) -> str | None:
        """The file counting the attempts of the task that heeds the request (`stop-*` as the request: a killed driver's is removed with it)."""
        return None if self.path is None else f"{self.path}.attempts"

    def begin_attempt(self) -> int | None:
        """In the task, before it trains: count this attempt; its number (1: the first), None when
        the count could not be read or written (the store did not answer: nothing is known)."""
        from crawlmill.files import as_path, atomic_write_text

        if self.attempts_path is None:
            return None
        try:
            path = as_path(self.attempts_path)
            before = int(path.read_text().strip() or 0) if path.exists() else 0
            atomic_write_text(self.attempts_path, str(before + 1))
        except (OSError, ValueError):
            return None
        return before + 1

    def remove(self) -> None:
        """The request and the attempts' count (the driver, once the task ended)."""
        from crawlmill.files import as_path, remove_file

        for path in (self.path, self.attempts_path):
            with contextlib.suppress(OSError):
                if path is not None and as_path(path).exists():
                    remove_file(path)


class ForwardStop:
    """In the driver of a trainer that runs elsewhere (a Ray task), while entered: the first SIGTERM
    or Ctrl-C asks the trainer to stop (StopRequest.ask) instead of interrupting the driver, which
    goes on waiting for the trainer to save the step it is at and stop; a second one interrupts at
    once (Terminated for SIGTERM, KeyboardInterrupt for Ctrl-C: the steps since the last checkpoint
    lost). `which`: the signal forwarded, if any. Nothing is installed outside the main thread, and
    an ignored SIGINT stays ignored. A request that cannot be written interrupts at once too."""

    def __init__(self, request: StopRequest) -> None:
        self.request = request
        self.which: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.which is None:
            try:
                self.request.ask(name)
            except Exception as exc:  # noqa: BLE001 - the stop the driver can give: at once
                os.write(2, f"\n{name}: the stop request could not be written ({type(exc).__name__}: {exc}); stopping now\n".encode())
                self.which = name
                raise self.interrupt() from None
            self.which = name
            again = "Ctrl-C" if signum == signal.SIGINT else name
            os.write(2, f"\n{name}: the trainer saves a checkpoint at the end of its step, then the run stops ({again} again: stop now, losing the steps since the last checkpoint)\n".encode())
            return
        self.which = name
        os.write(2, f"\n{name}: stopping now, without a checkpoint (the steps since the last one are lost)\n".encode())
        raise self.interrupt()

    def interrupt(self) -> KeyboardInterrupt:
        """What unwinds the driver after the signal it got last: cli_common.resumable says what is kept and exits 143 or 130."""
        from crawlmill.pipeline.ray_tasks import TERMINATED, Terminated

        if self.which in (None, "SIGINT"):
            return KeyboardInterrupt()
        TERMINATED[0] = True  # raised inside ray.wait, it comes out as a plain KeyboardInterrupt: still 143
        return Terminated()

    def __enter__(self) -> ForwardStop:
        if threading.current_thread() is threading.main_thread():
            wanted = [signal.SIGTERM] + ([] if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else [signal.SIGINT])
            self._previous = {signum: signal.signal(signum, self._handle) for signum in wanted}
        return self

    def __exit__(self, *exc: object) -> None:
        from crawlmill.pipeline.ray_tasks import UNWIND_ON_SIGTERM, raise_terminated

        for signum, handler in self._previous.items():
            if signum == signal.SIGTERM and handler == signal.SIG_DFL and UNWIND_ON_SIGTERM[0]:
                handler = raise_terminated  # what ensure_ray installs in a stage CLI (entered before Ray started)
            signal.signal(signum, handler)
        self._previous = {}


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Collective: each flag true if it is true on any rank (one all-reduce, MAX), so that every rank
    takes the same decision: to stop on a signal only some ranks received, or to save by time (each
    rank's clock crosses the interval at a slightly different moment; ranks that disagreed would
    wait in different collectives for ever)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return list(flags)
    values = torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]
