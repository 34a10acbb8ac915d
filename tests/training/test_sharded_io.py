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

from crawlmill.training.model_config import ModelConfig
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


def test_a_synchronous_save_starts_no_process_that_outlives_it(tmp_path: Path, process_group) -> None:
    """Megatron's writer hands write results over through a queue served by a spawned Manager
    process, started at a process's first save (a fresh interpreter: ~3 s of CPU a rank); a
    synchronous save passes them within this process and leaves the library's queue as it was."""
    import psutil
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    def spawned() -> set[int]:
        found = set()
        for child in psutil.Process().children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    found.add(child.pid)
            except psutil.Error:  # ended meanwhile, or a zombie (another test's writer, not yet reaped)
                continue
        return found

    before, library_queue = spawned(), filesystem_async._results_queue
    model, optimizer = _trained(1)
    writer = ShardedWriter(False)
    for step in range(2):
        writer.save(_state(model, optimizer), tmp_path / f"step-{step}")
    writer.close()
    assert spawned() == before and filesystem_async._results_queue is library_queue
    other, other_optimizer = _trained(2)
    _restore(tmp_path / "step-1", other, other_optimizer)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("fault", ["cut", "missing", "metadata cut"])
def test_a_file_cut_short_or_missing_is_found_without_reading_a_tensor(tmp_path: Path, process_group, fault: str) -> None:
    """check_sizes, what a finished run's resume checks instead of loading: each shard file as long
    as `.metadata` says, `.metadata` itself whole; a refused `.metadata` stays a refusal."""
    import collections
    import pickle

    from crawlmill.training.sharded_io import DamagedCheckpoint, check_sizes

    writer = ShardedWriter(False)
    writer.save(_state(*_trained(1)), tmp_path / "model")
    writer.close()
    check_sizes(tmp_path / "model")  # whole
    shard = next((tmp_path / "model").glob("*.distcp"))
    if fault == "cut":
        shard.write_bytes(shard.read_bytes()[:-1])
        expected = rf"{shard.name}: {shard.stat().st_size:,} bytes, its data ends at byte {shard.stat().st_size + 1:,}"
    elif fault == "missing":
        shard.unlink()
        expected = rf"{shard.name}: missing"
    else:
        metadata = tmp_path / "model/.metadata"
        metadata.write_bytes(metadata.read_bytes()[:-20])
        expected = r"\.metadata: damaged or incomplete"
    with pytest.raises(DamagedCheckpoint, match=expected):
        check_sizes(tmp_path / "model")
    (tmp_path / "model/.metadata").write_bytes(pickle.dumps(collections.Counter()))
    with pytest.raises(ValueError, match=r"\.metadata: refused: .*collections\.Counter is not checkpoint metadata") as refused:
        check_sizes(tmp_path / "model")
    assert not isinstance(refused.value, DamagedCheckpoint)


def _replicated_state(model: torch.nn.Module, optimizer: torch.optim.AdamW, rank: int) -> dict:
    """A data-parallel replica's state: every tensor whole on every rank, this rank's replica id."""
    from megatron.core.dist_checkpointing import ShardedTensor

    sharded = {name: ShardedTensor.from_rank_offsets(f"net.{name}", p, replica_id=rank) for name, p in model.named_parameters()}
    return {"model": sharded, "optimizer": torch_optimizer_sharded_state(optimizer, sharded)}


def _replica(seed: int) -> tuple[torch.nn.Module, torch.optim.AdamW]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 48), torch.nn.Linear(48, 32))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(3, 64)).square().sum().backward()
    optimizer.step()
    return model, optimizer


def _data_bytes(folder: Path, rank: int) -> int:
    return sum(p.stat().st_size for p in folder.glob(f"__{rank}_*.distcp"))


def _two_rank_saves(rank: int, root: Path) -> None:
    """One of two data-parallel ranks: saves the same replicated state with and without the fully
    parallel strategy, and three times with a constant structure (values changing between saves);
    loads each back and records what it wrote and whether every load was exact."""
    import json

    dist.init_process_group("gloo", init_method=f"file://{root / 'store'}", rank=rank, world_size=2)
    try:
        model, optimizer = _replica(1)
        report: dict = {}
        for name, writer in (("fully_parallel", ShardedWriter(False)), ("rank0_writes", ShardedWriter(False, fully_parallel=False))):
            writer.save(_replicated_state(model, optimizer, rank), root / name)
            writer.close()
            report[name] = _data_bytes(root / name, rank)
        cached, expected = ShardedWriter(False, constant_structure=True), []
        for step in range(3):
            with torch.no_grad():
                model[0].weight.add_(step + 1)
            expected.append(model[0].weight.clone())
            cached.save(_replicated_state(model, optimizer, rank), root / f"cached-{step}")
        cached.close()
        exact = []
        for name, weight in [("fully_parallel", None), ("rank0_writes", None), *((f"cached-{i}", w) for i, w in enumerate(expected))]:
            other, other_optimizer = _replica(2)
            loaded = load_sharded(_replicated_state(other, other_optimizer, rank), root / name)
            other.load_state_dict(loaded["model"])
            other_optimizer.load_state_dict(torch_optimizer_state(loaded["optimizer"]))
            want, want_moments = _replica(1)
            if weight is not None:
                want[0].weight.data.copy_(weight)
            same = all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), want.state_dict().values(), strict=True))
            moments = [other_optimizer.state_dict()["state"][i] for i in range(6)], [want_moments.state_dict()["state"][i] for i in range(6)]
            exact.append(same and all(torch.equal(a[k], b[k]) for a, b in zip(*moments, strict=True) for k in a))
        report["exact"] = exact
        (root / f"rank-{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def test_fully_parallel_saves_spread_replicated_tensors_over_the_data_parallel_ranks(tmp_path: Path) -> None:
    """Megatron's fully parallel strategy (the default): two data-parallel replicas each write about
    half of the tensors they both hold; without it rank 0 writes everything. Either way, and with
    the first save's plan reused (constant_structure), the checkpoint loads back exactly."""
    import json

    torch.multiprocessing.spawn(_two_rank_saves, args=(tmp_path,), nprocs=2)
    reports = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert all(report["exact"] == [True] * 5 for report in reports), reports
    alone = [report["rank0_writes"] for report in reports]
    spread = [report["fully_parallel"] for report in reports]
    assert alone[1] == 0 and alone[0] > 0, alone
    assert min(spread) > 0.35 * sum(spread) and abs(sum(spread) - sum(alone)) < 0.05 * sum(alone), (spread, alone)


def _with_extra_state(module: torch.nn.Module) -> None:
    """Give `module` extra state, as Transformer Engine's norms have (a byte tensor)."""
    methods = {"get_extra_state": lambda self: torch.tensor([1, 2, 3], dtype=torch.uint8), "set_extra_state": lambda self, state: setattr(self, "loaded", state)}
    module.__class__ = type("WithExtraState", (type(module),), methods)


def test_extra_state_the_checkpoint_lacks_is_kept_and_a_missing_weight_still_fails(tmp_path: Path, model_parallel) -> None:
    """A model with Transformer Engine's final norm (extra state) reads a checkpoint written by the
    local spec (torch's norm: none), as a GPU resume, --init-from or eval of a CPU run or an import
    does; before, the load failed on the one key (`Missing key ... _extra_state`)."""
    from megatron.core.dist_checkpointing import ShardedTensor

    from crawlmill.training.model import build_model

    shape = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=2, ffn_hidden_size=128, seq_length=32)
    saved = build_model(shape, vocab_size=256)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    ShardedWriter(False).save({"model": saved.sharded_state_dict()}, folder)
    torch.manual_seed(99)
    reading = build_model(shape, vocab_size=256)
    _with_extra_state(reading.decoder.final_layernorm)
    template = {"model": reading.sharded_state_dict()}
    assert "decoder.final_layernorm._extra_state" in template["model"]
    reading.load_state_dict(load_sharded(template, folder)["model"])
    weights = {k: v for k, v in saved.state_dict().items() if torch.is_tensor(v) and v.is_floating_point()}
    assert weights and all(torch.equal(v, reading.state_dict()[k]) for k, v in weights.items())
    assert torch.equal(reading.decoder.final_layernorm.loaded, torch.tensor([1, 2, 3], dtype=torch.uint8))  # its own, kept
    weight = reading.decoder.final_layernorm.weight
    template["model"]["decoder.extra.weight"] = ShardedTensor.from_rank_offsets("decoder.extra.weight", torch.zeros_like(weight), replica_id=0)
    with pytest.raises(BaseException, match="decoder.extra.weight"):
        load_sharded(template, folder)
