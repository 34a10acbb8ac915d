"""training/fetch_on_read.py: a checkpoint in a real S3 server (moto, loopback) loaded by two gloo
ranks, each fetching only the byte ranges its read plan needs. The checkpoint: a weight split in
two row halves (rank r wrote half r) and a norm both ranks hold, written by rank 0 (megatron-core
0.19 also puts the common state into rank 0's file, 0.16 into common.pt)."""

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
CASES = {  # name: (folder of each rank, whole weight on each rank, where in the bucket)
    "a disk each": ("machine-{rank}", False, "ckpt"),
    "one shared disk": ("shared", False, "ckpt"),
    "whole weight on each": ("whole-{rank}", True, "ckpt"),
    "planted metadata": ("planted-{rank}", False, "planted"),
    "a file cut short": ("cut-{rank}", False, "cut"),
}


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
        for case, (folder, whole, prefix) in CASES.items():
            local, remote = root / folder.format(rank=rank) / "model", f"s3://{BUCKET}/{prefix}/model"
            if rank == 0 or "{rank}" in folder:  # once per folder (sharing.leader_does in a load)
                download_common(remote, local)
            dist.barrier()
            template = _state(rank, torch.zeros((4, 6) if whole else (2, 6)), torch.zeros(6), whole)
            try:
                with fetched_reads(local, remote) as fetched:
                    loaded = load_sharded(template, local)
                rows = WEIGHT if whole else WEIGHT[2 * rank : 2 * rank + 2]
                report[case] = {"fetched": fetched, "exact": torch.equal(loaded["weight"], rows) and torch.equal(loaded["norm"], NORM)}
            except BaseException as exc:  # noqa: BLE001 - CheckpointException: recorded for the test
                report[case] = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[-400:]}"}
            dist.barrier()
        (root / f"rank-{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, list[dict]]:
    """(the saved checkpoint's folder, each rank's report)."""
    root = tmp_path_factory.mktemp("fetch")
    with moto_s3(BUCKET) as (fs, _):
        torch.multiprocessing.spawn(_ranks, args=(root, "save"), nprocs=2)
        for prefix in ("ckpt", "planted", "cut"):
            fs.put(str(root / "saved"), f"{BUCKET}/{prefix}/model", recursive=True)
        # metadata that names files outside the folder (a bucket anyone may write to)
        metadata = pickle.loads((root / "saved/.metadata").read_bytes())
        for info in metadata.storage_data.values():
            info.relative_path = f"../{info.relative_path}"
        fs.pipe_file(f"{BUCKET}/planted/model/.metadata", pickle.dumps(metadata))
        for name in fs.glob(f"{BUCKET}/cut/model/__1_*.distcp"):  # rank 1's file cut in half
            fs.pipe_file(name, fs.cat_file(name)[: fs.size(name) // 2])
        torch.multiprocessing.spawn(_ranks, args=(root, "load"), nprocs=2)
    assert not list(root.glob("*.distcp")), "a file was written outside a checkpoint's folder"
    return root / "saved", [json.loads((root / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


def _ranges(pairs) -> dict[str, list[tuple[int, int]]]:
    """(file, start, end) triples as each file's merged ranges."""
    from crawlmill.training.fetch_on_read import merged

    files: dict[str, list[tuple[int, int]]] = {}
    for name, start, end in pairs:
        files.setdefault(name, []).append((start, end))
    return {name: merged(ranges) for name, ranges in sorted(files.items())}


@pytest.fixture(scope="module")
def pieces(saved) -> dict[str, list[tuple[str, int, int]]]:
    """Where each piece is, from the checkpoint's own metadata (file, start, end): "weight 0",
    "weight 1" (the row halves), "norm", "common" (0.19's common state; none on 0.16)."""
    metadata = pickle.loads((saved[0] / ".metadata").read_bytes())
    found: dict[str, list[tuple[str, int, int]]] = {"common": []}
    for index, info in metadata.storage_data.items():
        name = index.fqn if index.fqn == "norm" else "common" if index.fqn.startswith("common_state") else f"weight {index.offset[0] // 2}"
        found.setdefault(name, []).append((info.relative_path, info.offset, info.offset + info.length))
    assert set(found) == {"weight 0", "weight 1", "norm", "common"}
    return found


def test_each_rank_fetches_only_the_bytes_it_reads(saved, pieces):
    """Each rank reads its half of the weight, the norm (and 0.19's common state): it fetches those
    byte ranges and no others (not the other half, whichever file holds it), and loads exact values."""
    reports = saved[1]
    for rank, report in enumerate(reports):
        assert _ranges(map(tuple, report["a disk each"]["fetched"])) == _ranges(pieces[f"weight {rank}"] + pieces["norm"] + pieces["common"]), rank
        other = _ranges(pieces[f"weight {1 - rank}"])
        for name, start, end in report["a disk each"]["fetched"]:
            assert all(e <= start or s >= end for s, e in other.get(name, [])), (rank, name, start, end)
    assert all(r[case]["exact"] for r in reports for case in ("a disk each", "one shared disk", "whole weight on each"))


def test_ranks_sharing_a_folder_fetch_each_range_once(saved, pieces):
    fetched = [tuple(f) for report in saved[1] for f in report["one shared disk"]["fetched"]]
    assert _ranges(fetched) == _ranges([p for piece in pieces.values() for p in piece])
    assert sum(end - start for _, start, end in fetched) == sum(e - s for ranges in _ranges(fetched).values() for s, e in ranges)  # none twice


def test_another_layout_fetches_what_it_reads(saved, pieces):
    """Each rank asks for the whole weight (a resharded load): every piece on each."""
    everything = _ranges([p for piece in pieces.values() for p in piece])
    assert [_ranges(map(tuple, r["whole weight on each"]["fetched"])) for r in saved[1]] == [everything] * 2


def test_metadata_naming_a_file_outside_the_folder_is_refused(saved):
    for report in saved[1]:
        assert "the checkpoint's metadata names the file '../__" in report["planted metadata"]["error"], report["planted metadata"]
        assert "outside its folder; refused" in report["planted metadata"]["error"]


def test_a_file_cut_short_in_the_bucket_is_a_damaged_checkpoint(saved):
    """Rank 1's file is half its length: rank 1's load is DamagedCheckpoint (a resume goes on to the
    checkpoint before), saying so."""
    error = saved[1][1]["a file cut short"]["error"]
    assert error.startswith("DamagedCheckpoint: ") and "EOFError" in error and "cut short" in error, error
