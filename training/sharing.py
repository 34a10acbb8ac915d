"""Which ranks of a run see the same folder, found by looking, not assumed from LOCAL_RANK; and
work done once per such folder with every rank agreeing on its failure.

A run on several machines keeps files per machine: a URL run's staging folder (its GPTDataset
index cache, the copy of a checkpoint it resumes from) lives under each machine's
$CRAWLMILL_CACHE. One rank per folder must fetch or build there for the others. LOCAL_RANK 0 is
not a safe guess: launchers such as `srun` set none, and a cache on a home directory the machines
share is one folder for all of them (each machine's first rank then downloaded into it at once).
So `who_shares` looks: every rank writes a file of this call's own name into the folder and reads
rank 0's, then those of the lower ranks of its host; the first it sees leads it (rank 0's readers:
one download for every machine that shares rank 0's disk). Two leaders in one folder (machines of
other hosts sharing a disk that is not rank 0's) only cost a second copy: a load's copy is named
by its leader.

    sharing = who_shares(store.local / "checkpoints", device)       # collective
    leader_does(lambda: download(url, local), sharing, f"downloading {url}")
    result = leaders_first(builder.build, sharing, "building the dataset index")
    check_shared(store.local)   # a local run folder every rank must see (UnsharedRunFolder)

A failure of the leader's work (a download cut off, a full disk), or of a rank's probe file, used to
leave the other ranks waiting at a barrier until the process group's timeout; here every rank
raises: the failed one its own error, the others `ElsewhereFailed` naming the work.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .stopsignal import any_rank

T = TypeVar("T")
PROBE = ".ranks-see-"  # a who_shares call's folder of marker files, removed when done


def _group() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device() -> torch.device:
    """Where a tensor must live for the process group's collectives (nccl: the GPU)."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def local_index() -> int:
    """This process's index among the ranks of its machine, for the GPU it takes (the caller takes it
    modulo the GPUs it sees: `srun --gpus-per-task` shows each task one): torchrun's and Ray Train's LOCAL_RANK, else
    Slurm's or Open MPI's own variable (`srun` / `mpirun` without torchrun)."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def rank0_random(device: Any = None) -> int:
    """A random number (48 bits), rank 0's on every rank: one broadcast; alone, its own."""
    number = torch.tensor([secrets.randbits(48)], dtype=torch.int64, device=device or collective_device())
    if _group()[1] > 1:
        dist.broadcast(number, 0)
    return int(number)


@dataclass(frozen=True)
class Sharing:
    """This rank's view of a folder: `leader`, the rank that works there for it (itself, when it sees
    neither rank 0's files there nor those of a lower rank of its host); `blind`, how many ranks of the run do
    not see rank 0's folder (the same on every rank)."""

    rank: int
    leader: int
    blind: int

    @property
    def leads(self) -> bool:
        return self.leader == self.rank


def who_shares(folder: Path, device: Any = None) -> Sharing:
    """Collective: which rank works in `folder` for this one (see the module docstring). One rank,
    or no process group: itself."""
    rank, world = _group()
    if world == 1:
        return Sharing(rank, rank, 0)
    device = device or collective_device()
    hosts: list[str | None] = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    nonce = str(rank0_random(device))
    probe = Path(folder) / f"{PROBE}{int(nonce):012x}"

    def mark() -> None:
        probe.mkdir(parents=True, exist_ok=True)
        (probe / str(rank)).write_text(nonce)

    def unmark() -> None:
        (probe / str(rank)).unlink(missing_ok=True)
        try:
            probe.rmdir()  # the last of a shared folder's ranks removes it
        except OSError:
            pass

    try:
        _agreed(mark, True, device, f"writing into {folder}")  # a full disk on one rank: an error on all
    except Exception:
        unmark()
        raise

    def sees(other: int) -> bool:
        try:
            return (probe / str(other)).read_text() == nonce
        except OSError:
            return False

    # by name, not by listing the folder (a shared file system may list it stale); this host's
    # lower ranks too: processes of one host name may still have disks of their own (containers)
    candidates = [0, *(other for other in range(1, rank) if hosts[other] == hosts[rank])]
    leader = next((other for other in candidates if sees(other)), rank)
    blind = torch.tensor([int(leader != 0)], dtype=torch.int64, device=device)
    dist.all_reduce(blind)  # also: every rank has read before the files go
    unmark()
    return Sharing(rank, leader, int(blind))


class ElsewhereFailed(RuntimeError):
    """Work another rank did for this one failed (that rank raised its own error)."""


def _agreed(work: Callable[[], T], runs: bool, device: Any, what: str) -> T | None:
    """`work()` where `runs`; collective: if it raised on any rank, every rank raises."""
    error: BaseException | None = None
    result = None
    if runs:
        try:
            result = work()
        except Exception as exc:  # noqa: BLE001 - re-raised below, once every rank knows
            error = exc
    if any_rank([error is not None], device or collective_device())[0]:
        if error is not None:
            raise error
        raise ElsewhereFailed(f"{what} failed on another rank (its error is in that rank's output)")
    return result


def leader_does(work: Callable[[], None], sharing: Sharing, what: str, device: Any = None) -> None:
    """`work()` on the ranks that lead their folder; collective (a barrier): the others then find its
    result there, or every rank raises."""
    _agreed(work, sharing.leads, device, what)


def leaders_first(build: Callable[[], T], sharing: Sharing, what: str, device: Any = None) -> T:
    """`build()` on every rank in three turns, so that what it writes into the shared folder is
    written once per folder: rank 0, then the other leaders (a hit where they see rank 0's), then
    the rest, which read their leader's. A failure in a turn raises on every rank."""
    result: T | None = None
    for turn in (sharing.rank == 0, sharing.leads and sharing.rank != 0, not sharing.leads):
        built = _agreed(build, turn, device, what)
        if turn:
            result = built
    return result  # type: ignore[return-value]  # one of the turns is this rank's


class UnsharedRunFolder(ValueError):
    """A local run folder that the ranks of a multi-machine run do not all see."""


def check_shared(folder: Path, device: Any = None) -> None:
    """Collective: UnsharedRunFolder on every rank unless every rank sees `folder` (a local run
    folder) as rank 0 does. Checkpoints of a run on several machines are written by every rank into
    one folder: on disks of their own, rank 0's checkpoints would lack the other machines' shards,
    found only at the first resume. (A URL run stages per machine: not for it.)"""
    sharing = who_shares(folder, device)
    if sharing.blind:
        raise UnsharedRunFolder(
            f"{folder}: {sharing.blind} of {_group()[1]} ranks do not see this run folder's files (a folder on each machine's own disk): "
            "train into a file system every machine shares, or into a URL (s3://...), which each machine stages on its own disk"
        )
