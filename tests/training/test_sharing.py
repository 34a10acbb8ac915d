"""training/sharing.py on four real gloo ranks, their host names and folders arranged as machines
and containers arrange them."""

import json
import socket
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist

from crawlmill.training import sharing

# which folder each of the four ranks sees as its staging folder, and its host name, by arrangement
TWO_HOSTS = ["host-0", "host-0", "host-1", "host-1"]
LAYOUTS = {
    "one shared disk": (["shared", "shared", "shared", "shared"], TWO_HOSTS),  # a cache on a home every machine mounts
    "a disk per machine": (["host-0", "host-0", "host-1", "host-1"], TWO_HOSTS),
    "a disk per rank on host 1": (["host-0", "host-0", "rank-2", "rank-3"], TWO_HOSTS),
    "two containers on one host": (["box-0", "box-0", "box-1", "box-1"], ["node"] * 4),  # one host name, a disk each
}


def _ranks(rank: int, root: Path) -> None:
    """One of four ranks: who_shares, leaders_first, leader_does (rank 2's work failing) and
    check_shared in each layout; what each gave, into rank-R.json."""
    dist.init_process_group("gloo", init_method=f"file://{root / 'store'}", rank=rank, world_size=4)
    report: dict = {}
    try:
        for name, (folders, hosts) in LAYOUTS.items():
            with mock.patch.object(socket, "gethostname", lambda hosts=hosts: hosts[rank]):
                folder = root / name / folders[rank]
                folder.mkdir(parents=True, exist_ok=True)
                found = sharing.who_shares(folder)

                def build(folder: Path = folder) -> str:  # a cache: built where missing, read where present
                    cache = folder / "cache"
                    if not cache.exists():
                        cache.write_text(f"built by {rank}")
                    return cache.read_text()

                built = sharing.leaders_first(build, found, "building")

                def fail_on_rank_2() -> None:
                    if rank == 2:
                        raise OSError("No space left on device")

                try:
                    sharing.leader_does(fail_on_rank_2, found, "downloading step-4")
                    failed = None
                except (OSError, sharing.ElsewhereFailed) as exc:
                    failed = f"{type(exc).__name__}: {exc}"
                try:
                    sharing.check_shared(folder)
                    refused = None
                except sharing.UnsharedRunFolder as exc:
                    refused = str(exc)
                report[name] = {"leader": found.leader, "blind": found.blind, "built": built, "failed": failed, "refused": refused}
        unwritable = root / "a file, not a folder"  # rank 2's probe cannot be written there
        unwritable.touch()
        try:
            sharing.who_shares(unwritable if rank == 2 else root / "fine")
            report["unwritable"] = None
        except (OSError, sharing.ElsewhereFailed) as exc:
            report["unwritable"] = type(exc).__name__
        (root / f"rank-{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("sharing")
    torch.multiprocessing.spawn(_ranks, args=(root,), nprocs=4)
    assert not [p for p in root.rglob(f"{sharing.PROBE}*")], "a probe's files were left behind"
    return [json.loads((root / f"rank-{rank}.json").read_text()) for rank in range(4)]


def test_the_rank_that_works_in_a_folder_is_the_first_that_sees_it(reports):
    """One download or build per folder, whatever LOCAL_RANK says (these ranks have none): a disk
    every machine shares is rank 0's alone; a disk per machine, its first rank's; a rank that sees
    neither rank 0's nor its host's first rank's files works for itself."""
    leaders = {name: [report[name]["leader"] for report in reports] for name in LAYOUTS}
    assert leaders == {"one shared disk": [0, 0, 0, 0], "a disk per machine": [0, 0, 2, 2], "a disk per rank on host 1": [0, 0, 2, 3],
                       "two containers on one host": [0, 0, 2, 2]}  # fmt: skip
    built = {name: [report[name]["built"] for report in reports] for name in LAYOUTS}
    assert built == {"one shared disk": ["built by 0"] * 4, "a disk per machine": ["built by 0", "built by 0", "built by 2", "built by 2"],
                     "a disk per rank on host 1": ["built by 0", "built by 0", "built by 2", "built by 3"],
                     "two containers on one host": ["built by 0", "built by 0", "built by 2", "built by 2"]}  # fmt: skip


def test_a_failure_of_one_folders_work_is_an_error_on_every_rank(reports):
    """Rank 2's download fails where it leads (two layouts): it raises its own error, every other
    rank says another rank failed, rather than waiting at a barrier for the group's timeout. Where
    rank 0 leads every rank, rank 2 does no work and nothing fails."""
    for name in ("a disk per machine", "a disk per rank on host 1", "two containers on one host"):
        failed = [report[name]["failed"] for report in reports]
        assert failed[2] == "OSError: No space left on device", name
        assert all(f == "ElsewhereFailed: downloading step-4 failed on another rank (its error is in that rank's output)" for f in failed[:2] + failed[3:]), name
    assert [report["one shared disk"]["failed"] for report in reports] == [None] * 4


def test_a_run_folder_some_ranks_do_not_see_is_refused_on_every_rank(reports):
    assert [report["one shared disk"]["refused"] for report in reports] == [None] * 4
    for name in ("a disk per machine", "a disk per rank on host 1", "two containers on one host"):
        refused = [report[name]["refused"] for report in reports]
        assert all(r is not None and ": 2 of 4 ranks do not see this run folder's files" in r for r in refused), (name, refused)


def test_a_probe_one_rank_cannot_write_is_an_error_on_every_rank(reports):
    """Rank 2's folder cannot take the probe file (a full disk, a read-only mount; here a file in
    the way): rank 2 raises its OSError, the others ElsewhereFailed, none waits at a barrier."""
    assert [report["unwritable"] for report in reports] == ["ElsewhereFailed", "ElsewhereFailed", "NotADirectoryError", "ElsewhereFailed"]


def test_alone_a_rank_leads_its_own_folder(tmp_path, monkeypatch):
    """No process group (one process): itself, no probe written; the GPU a launcher's variable names."""
    assert sharing.who_shares(tmp_path) == sharing.Sharing(rank=0, leader=0, blind=0)
    assert not list(tmp_path.iterdir())
    for name in ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert sharing.local_index() == 0
    monkeypatch.setenv("SLURM_LOCALID", "3")
    assert sharing.local_index() == 3
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert sharing.local_index() == 1
