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

import os
import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist


class TrainingStopped(RuntimeError):
    """A stop signal arrived: the run saved a checkpoint at the step it was at and stopped."""


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
