"""training/fetch_on_read.py: a checkpoint in a real S3 server (moto, loopback) loaded by two gloo
ranks, each fetching only the files its read plan needs. The checkpoint: a weight split in two row
halves (rank r wrote half r into `__r_*.distcp`) and a norm both ranks hold, written by rank 0
(megatron-core 0.19 also puts the common state into rank 0's file, 0.16 into common.pt)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from crawlmill.training.sharded_io import ShardedWriter, load_sharded
from tests.s3server import moto_s3

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "crawlmill-fetch"
WEIGHT = torch.arange(24, dtype=torch.float32).reshape(4, 6)
NORM = torch.linspace(1.0, 2.0, 6)


def _state(rank: int, weight: torch.Tensor, norm: torch.Tensor, whole: bool = False) -> dict:
    """Rank `rank`'s sharded state: its row half of the weight (`whole`: all of it), the norm (rank 0's
    replica the one saved)."""
    from megatron.core.dist_checkpointing import ShardedTensor

    part = ShardedTensor.from_rank_offsets("weight", weight, replica_id=rank) if whole else ShardedTensor.from_rank_offsets("weight", weight, (0, rank, 2), replica_id=0)
    return {"weight": part, "norm": ShardedTensor.from_rank_offsets("norm", norm, replica_id=rank)}


def _ranks(rank: int, root: Path, step: str) -> None:
    from crawlmill.training.fetch_on_read import download_common, fetched_reads

    dist.init_process_group("gloo", init_method=f"file://{root / f'store-{step}'}", rank=rank, world_size=2)
    try:
        if step == "save":
            writer = ShardedWriter(False, fully_parallel=False)
            writer.save(_state(rank, WEIGHT[2 * rank : 2 * rank + 2].clone(), NORM.clone()), root / "saved")
            writer.close()
            return
        report = {}
        for case, folder, whole, prefix in (("a disk each", f"machine-{rank}", False, "ckpt"), ("one shared disk", "shared", False, "ckpt"),
                                            ("whole weight on each", f"whole-{rank}", True, "ckpt"), ("planted metadata", f"planted-{rank}", False, "planted")):  # fmt: skip
            local, remote = root / folder / "model", f"s3://{BUCKET}/{prefix}/model"
            if rank == 0 or folder != "shared":  # once per folder (sharing.leader_does in a load)
                download_common(remote, local)
            dist.barrier()
            shape = (4, 6) if whole else (2, 6)
            template = _state(rank, torch.zeros(shape), torch.zeros(6), whole)
            try:
                with fetched_reads(local, remote) as fetched:
                    loaded = load_sharded(template, local)
                rows = WEIGHT if whole else WEIGHT[2 * rank : 2 * rank + 2]
                exact = torch.equal(loaded["weight"], rows) and torch.equal(loaded["norm"], NORM)
                report[case] = {"fetched": fetched, "exact": exact, "files": sorted(p.name for p in local.glob("*.distcp"))}
            except BaseException as exc:  # noqa: BLE001 - CheckpointException: recorded for the test
                report[case] = {"error": " ".join(str(exc).split())[-400:]}
            dist.barrier()
        (root / f"rank-{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("fetch")
    with moto_s3(BUCKET) as (fs, _):
        torch.multiprocessing.spawn(_ranks, args=(root, "save"), nprocs=2)
        fs.put(str(root / "saved"), f"{BUCKET}/ckpt/model", recursive=True)
        # the same files, but metadata that names a file outside the folder (a bucket anyone may write to)
        metadata = pickle.loads((root / "saved/.metadata").read_bytes())
        for info in metadata.storage_data.values():
            info.relative_path = f"../{info.relative_path}"
        fs.put(str(root / "saved"), f"{BUCKET}/planted/model", recursive=True)
        fs.pipe_file(f"{BUCKET}/planted/model/.metadata", pickle.dumps(metadata))
        torch.multiprocessing.spawn(_ranks, args=(root, "load"), nprocs=2)
    assert not list(root.glob("*.distcp")), "a file was written outside a checkpoint's folder"
    return [json.loads((root / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


@pytest.fixture(scope="module")
def files_of(reports, tmp_path_factory) -> dict[str, set[str]]:
    """The files that hold each piece, from the saved checkpoint's own metadata (which file DCP put
    each tensor in is its choice): "weight 0", "weight 1" (the row halves), "norm", and "common"
    (0.19's common state; none on 0.16)."""
    metadata = pickle.loads(next(tmp_path_factory.getbasetemp().glob("fetch*/saved/.metadata")).read_bytes())
    pieces: dict[str, set[str]] = {}
    for index, info in metadata.storage_data.items():
        name = index.fqn if index.fqn == "norm" else "common" if index.fqn.startswith("common_state") else f"weight {index.offset[0] // 2}"
        pieces.setdefault(name, set()).add(info.relative_path)
    assert set(pieces) - {"common"} == {"weight 0", "weight 1", "norm"}
    pieces.setdefault("common", set())
    return pieces


def test_each_rank_fetches_only_the_files_it_reads(reports, files_of):
    """Each rank reads its half of the weight, the norm (and 0.19's common state): it fetches the
    files that hold them and no other, and loads exact values. Rank 0's are all in its own file:
    it does not fetch rank 1's."""
    for rank, report in enumerate(reports):
        wanted = sorted(files_of[f"weight {rank}"] | files_of["norm"] | files_of["common"])
        assert report["a disk each"]["fetched"] == report["a disk each"]["files"] == wanted, rank
    assert not files_of["weight 1"] & set(reports[0]["a disk each"]["files"])
    assert all(r[case]["exact"] for r in reports for case in ("a disk each", "one shared disk", "whole weight on each"))


def test_ranks_sharing_a_folder_fetch_each_file_once(reports, files_of):
    fetched = [r["one shared disk"]["fetched"] for r in reports]
    assert sorted(fetched[0] + fetched[1]) == sorted(set().union(*files_of.values())), fetched  # each file once (rank 1 needs both)


def test_another_layout_fetches_what_it_reads(reports, files_of):
    """Each rank asks for the whole weight (a resharded load): every file on each."""
    assert [r["whole weight on each"]["fetched"] for r in reports] == [sorted(set().union(*files_of.values()))] * 2


def test_metadata_naming_a_file_outside_the_folder_is_refused(reports):
    for report in reports:
        assert "the checkpoint's metadata names the file '../__" in report["planted metadata"]["error"], report["planted metadata"]
        assert "outside its folder; refused" in report["planted metadata"]["error"]
