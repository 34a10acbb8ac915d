"""Model and optimizer state through dist_checkpointing (training/sharded_io.py), on CPU: a
synchronous save round-trips exactly; an asynchronous one (dist_checkpointing's async save, the
GPU path) returns before its tensors are written, writes the values of the moment it was asked
(training may change them meanwhile), and is complete only after `wait()`; each rank names the
files it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from crawlmill.training.sharded_io import COMMON_FILES, ShardedWriter, load_sharded, rank_files, torch_optimizer_sharded_state, torch_optimizer_state

from .conftest import common_state_in_shards, common_state_places


@pytest.fixture
def process_group(tmp_path: Path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def linear_sharded_state(model: torch.nn.Linear) -> dict:
    from megatron.core.dist_checkpointing import ShardedTensor

    return {name: ShardedTensor.from_rank_offsets(f"linear.{name}", param, replica_id=0) for name, param in model.named_parameters()}


def _trained(seed: int) -> tuple[torch.nn.Linear, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 8)).square().sum().backward()
    optimizer.step()
    return model, optimizer


def _state(model: torch.nn.Linear, optimizer: torch.optim.AdamW) -> dict:
    sharded = linear_sharded_state(model)
    return {"model": sharded, "optimizer": torch_optimizer_sharded_state(optimizer, sharded)}


def _restore(folder: Path, model: torch.nn.Linear, optimizer: torch.optim.AdamW) -> None:
    loaded = load_sharded(_state(model, optimizer), folder)
    model.load_state_dict(loaded["model"])
    optimizer.load_state_dict(torch_optimizer_state(loaded["optimizer"]))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_save_round_trips_model_and_optimizer_exactly(tmp_path: Path, process_group, asynchronous: bool) -> None:
    model, optimizer = _trained(1)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {k: v.clone() for k, v in optimizer.state_dict()["state"][0].items()}
    writer = ShardedWriter(asynchronous)
    writer.save(_state(model, optimizer), tmp_path / "model")
    if asynchronous:  # scheduled: only the common part is there; training goes on and changes the weights
        assert not list((tmp_path / "model").glob("*.distcp")) and not (tmp_path / "model/.metadata").exists()
        with torch.no_grad():
            model.weight.add_(1.0)
        writer.wait()
    writer.close()
    common = [name for name in COMMON_FILES if (tmp_path / "model" / name).is_file()]
    assert [p.name for p in rank_files(tmp_path / "model", 0)][-len(common) :] == common  # the shards first, the metadata last
    places = common_state_places(tmp_path / "model")
    assert {".metadata", "metadata.json"} <= set(common) and len(places) == 1 and (places != ["common.pt"]) == common_state_in_shards()
    other, other_optimizer = _trained(2)
    _restore(tmp_path / "model", other, other_optimizer)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in expected.items())  # the values when save was called
    restored = other_optimizer.state_dict()["state"][0]
    assert all(torch.equal(restored[k], v) for k, v in moments.items())
