"""Checkpoints are data, not code (training/checkpoint.py, sharded_io.py): a rank file or the
model's common part whose pickle would call a function (here `open`, creating a file) is refused
with an error naming it, and the call never happens, while a real checkpoint (model, optimizer,
every RNG state, numpy's included) still loads; the `latest` pointer cannot name a folder outside
the run's checkpoints."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from crawlmill.pathsafety import OutsideFolderError
from crawlmill.training.checkpoint import Checkpointer
from crawlmill.training.rng_state import rng_state
from crawlmill.training.sharded_io import torch_optimizer_sharded_state, torch_optimizer_state
from crawlmill.training.layout import ResumeLayout

from .test_sharded_io import linear_sharded_state, process_group  # noqa: F401 - a fixture


class _CreatesFile:
    """Unpickling this object calls open(target, "w"): what a hostile checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def _checkpointer(run_dir: Path) -> Checkpointer:
    return Checkpointer(run_dir, rank=0, world=1, keep=2, asynchronous=False, barrier=lambda: None)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "created-by-the-checkpoint"
    folder = tmp_path / "run" / "checkpoints" / "step-00000001"
    folder.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(2)}, "rng": _CreatesFile(target)}, folder / "rank-00000.pt")
    (folder / "meta.json").write_text(json.dumps({"step": 1, "world_size": 1}))
    saver = _checkpointer(tmp_path / "run")
    found, meta = saver.latest()
    # the pickled `open` is io.open on Python 3.11, _io.open on 3.12
    with pytest.raises(ValueError, match=r"rank-00000\.pt: refused: a checkpoint holds only tensors and plain data.*GLOBAL _?io\.open"):
        saver.load(found, meta, ResumeLayout(), sharded={})
    assert not target.exists()
    # the payload is real: an unchecked load runs it
    torch.load(folder / "rank-00000.pt", weights_only=False)
    assert target.exists()


def test_a_real_checkpoint_loads_with_its_rng_states(tmp_path: Path, process_group) -> None:  # noqa: F811
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    random.seed(7)
    np.random.seed(7)
    saver = _checkpointer(tmp_path / "run")
    sharded = linear_sharded_state(model)
    saver.save(3, {"model": sharded, "optimizer": torch_optimizer_sharded_state(optimizer, sharded)}, rng_state(), {"consumed_samples": 12})
    expected = np.random.get_state()
    found, meta = saver.latest()
    fresh = torch.nn.Linear(4, 3)
    template = linear_sharded_state(fresh)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    fresh(torch.ones(2, 4)).sum().backward()
    fresh_optimizer.step()  # moments to fill
    state, rng = saver.load(found, meta, ResumeLayout(), sharded={"model": template, "optimizer": torch_optimizer_sharded_state(fresh_optimizer, template)})
    fresh.load_state_dict(state["model"])
    fresh_optimizer.load_state_dict(torch_optimizer_state(state["optimizer"]))
    assert meta["step"] == 3 and int(fresh_optimizer.state_dict()["state"][0]["step"]) == 1
    assert torch.equal(fresh.weight, model.weight)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(fresh_optimizer.state_dict()["state"][0][key], optimizer.state_dict()["state"][0][key])
    numpy_state = rng["numpy"]
    assert numpy_state[0] == expected[0] and np.array_equal(numpy_state[1], expected[1]) and numpy_state[2:] == expected[2:]


def _saved_linear(tmp_path: Path, extra: dict | None = None) -> tuple[Checkpointer, Path, dict]:
    saver = _checkpointer(tmp_path / "run")
    saver.save(1, {"model": linear_sharded_state(torch.nn.Linear(4, 3)), **(extra or {})}, rng_state(), {"consumed_samples": 4})
    found, meta = saver.latest()
    return saver, found, meta


def test_model_files_that_would_run_code_are_refused(tmp_path: Path, process_group) -> None:  # noqa: F811
    """torch.distributed.checkpoint unpickles `.metadata` and non-tensor entries unchecked; we do not."""
    from megatron.core.dist_checkpointing import ShardedObject

    target = tmp_path / "created-by-the-checkpoint"
    template = {"model": linear_sharded_state(torch.nn.Linear(4, 3))}
    # the common part (common.pt in megatron-core 0.16)
    saver, found, meta = _saved_linear(tmp_path / "a")
    common = found / "model" / "common.pt"
    if common.exists():
        torch.save({"anything": _CreatesFile(target)}, common)
        with pytest.raises(ValueError, match=r"model: refused: a checkpoint holds only tensors and plain data.*GLOBAL _?io\.open"):
            saver.load(found, meta, ResumeLayout(), sharded=template)
    # a non-tensor entry inside a .distcp file (what Megatron's ShardedObjects are)
    saver, planted, planted_meta = _saved_linear(tmp_path / "b", {"extra": ShardedObject("extra", _CreatesFile(target), (1,), (0,))})
    with_extra = lambda: {**template, "extra": ShardedObject("extra", None, (1,), (0,))}  # noqa: E731
    with pytest.raises(ValueError, match=r"model: refused: a checkpoint holds only tensors and plain data.*GLOBAL _?io\.open"):
        saver.load(planted, planted_meta, ResumeLayout(), sharded=with_extra())
    # the global metadata
    saver, found, meta = _saved_linear(tmp_path / "c")
    (found / "model" / ".metadata").write_bytes(pickle.dumps(_CreatesFile(target)))
    with pytest.raises(ValueError, match=r"\.metadata: refused: a checkpoint's metadata holds only checkpoint metadata.*io\.open"):
        saver.load(found, meta, ResumeLayout(), sharded=template)
    assert not target.exists()
    # the payload is real: `checkpoint.trusted` loads unchecked, and it runs
    Checkpointer(tmp_path / "b" / "run", rank=0, world=1, keep=2, asynchronous=False, barrier=lambda: None, trusted=True).load(
        planted, planted_meta, ResumeLayout(), sharded=with_extra()
    )  # fmt: skip
    assert target.exists()


@pytest.mark.parametrize("pointer", ["../../elsewhere", "/tmp/elsewhere", "s3://other-bucket/run/checkpoints/step-00000001"])
def test_the_latest_pointer_stays_in_the_checkpoints_folder(tmp_path: Path, pointer: str) -> None:
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / "latest").write_text(pointer)
    with pytest.raises(OutsideFolderError, match=rf"checkpoints/latest: its checkpoint '{pointer}' is refused"):
        _checkpointer(tmp_path / "run").latest()


def test_a_checkpoint_whose_deletion_is_cut_short_is_not_taken_for_complete(tmp_path: Path, monkeypatch) -> None:
    """rmtree goes in listing order (here: model/ before meta.json), so a kill while an old checkpoint
    was deleted left meta.json beside a half-deleted model, and a resume took it as complete."""
    import json as _json

    from crawlmill.training import checkpoint as module

    for step in (5, 10):
        folder = tmp_path / f"step-{step:08d}"
        (folder / "model").mkdir(parents=True)
        (folder / "model/__0_0.distcp").write_bytes(b"x" * 100)
        (folder / "meta.json").write_text(_json.dumps({"step": step}))

    def killed(path, *args, **kwargs):
        raise KeyboardInterrupt  # the kill, before rmtree removed a thing

    monkeypatch.setattr(module.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        module.discard_local(tmp_path / "step-00000010")
    monkeypatch.undo()
    assert [meta["step"] for _, meta in module.complete_checkpoints(tmp_path)] == [5]
