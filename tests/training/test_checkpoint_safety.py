"""Checkpoints are data, not code (training/checkpoint.py): a rank file whose pickle would call a
function (here `open`, creating a file) is refused with an error naming it, and the call never
happens, while a real checkpoint (model, optimizer, every RNG state, numpy's included) still loads;
the `latest` pointer cannot name a folder outside the run's checkpoints."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from crawlmill.pathsafety import OutsideFolderError
from crawlmill.training.checkpoint import Checkpointer, rng_state


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
    with pytest.raises(ValueError, match=r"rank-00000\.pt: refused: a checkpoint holds only tensors and plain data.*GLOBAL io\.open"):
        saver.load(found, meta, replicated=True)
    assert not target.exists()
    # the payload is real: an unchecked load runs it
    torch.load(folder / "rank-00000.pt", weights_only=False)
    assert target.exists()


def test_a_real_checkpoint_loads_with_its_rng_states(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    random.seed(7)
    np.random.seed(7)
    saver = _checkpointer(tmp_path / "run")
    saver.save(3, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng_state()}, {"consumed_samples": 12})
    expected = np.random.get_state()
    found, meta = saver.latest()
    state = saver.load(found, meta, replicated=True)
    assert meta["step"] == 3 and state["optimizer"]["state"][0]["step"] == 1
    assert torch.equal(state["model"]["weight"], model.state_dict()["weight"])
    numpy_state = state["rng"]["numpy"]
    assert numpy_state[0] == expected[0] and np.array_equal(numpy_state[1], expected[1]) and numpy_state[2:] == expected[2:]


@pytest.mark.parametrize("pointer", ["../../elsewhere", "/tmp/elsewhere", "s3://other-bucket/run/checkpoints/step-00000001"])
def test_the_latest_pointer_stays_in_the_checkpoints_folder(tmp_path: Path, pointer: str) -> None:
    root = tmp_path / "run" / "checkpoints"
    root.mkdir(parents=True)
    (root / "latest").write_text(pointer)
    with pytest.raises(OutsideFolderError, match=rf"checkpoints/latest: its checkpoint '{pointer}' is refused"):
        _checkpointer(tmp_path / "run").latest()
