"""Checkpoint and stop on a signal: a preempted run (Kubernetes and Slurm send SIGTERM, Slurm's
`--signal=USR1@120` a chosen one, ahead of the kill) saves the step it is at instead of losing up
to `checkpoint.every_minutes` of work.

The handler only sets a flag (`received`); after every step the ranks agree on it through one
all-reduce (`any_rank`, with the time-based checkpoint decision), so every rank saves the same step
even when the signal reached only some of them (torchrun forwards it to every worker; a node's
agent may not).
Handlers can be installed only in a process's main thread: where training runs in another (Ray
Train's workers) the stop is not offered and a signal keeps its usual effect.

    with StopOnSignal("SIGTERM") as stop:
        for step in ...:
            ...
            stopping, by_time = any_rank([stop.received, by_time], device)
            if stopping:
                save(step); raise TrainingStopped(...)
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist


class TrainingStopped(RuntimeError):
    """A stop signal arrived: the run saved a checkpoint at the step it was at and stopped."""


class StopOnSignal:
    """Sets `received` when the named signal arrives (None: nothing installed), while entered."""

    def __init__(self, name: str | None) -> None:
        self.signum = signal.Signals[name] if name else None
        self.received = False
        self._previous: Any = None
        self.installed = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = True

    def __enter__(self) -> StopOnSignal:
        if self.signum is not None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(self.signum, self._previous)
            self.installed = False


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
