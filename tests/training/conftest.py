"""Shards to train on: the sample corpus that ships in samples/, ingested, filtered and packed with
a 1,000-token tokenizer trained on it (tests/tokenizer/conftest.py), so the tiny model's output
layer stays small; built once per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.stage import FilterStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.pack.config import PackConfig
from crawlmill.pipeline.pack.stage import PackStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.training.config import load_train_config
from tests.conftest import SAMPLES
from tests.tokenizer.conftest import small_tokenizer_dir  # noqa: F401 - a fixture, shared


@pytest.fixture(scope="session")
def tiny_shards(ray_local, small_tokenizer_dir, tmp_path_factory) -> Path:  # noqa: F811
    root = tmp_path_factory.mktemp("train-data")
    assert run_stage(IngestStage(IngestConfig(inputs=[str(SAMPLES / "crawl-data")])), root / "ingest", progress=False).ok
    assert run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")])), root / "filter", progress=False).ok
    config = PackConfig(inputs=[str(root / "filter")], tokenizer=str(small_tokenizer_dir))
    assert run_stage(PackStage(config), root / "shards", progress=False).ok
    return root / "shards"


@pytest.fixture
def model_parallel():
    """A one-rank gloo group with Megatron's model-parallel state (sizes 1), seeded, for a model built here."""
    from crawlmill.training.run_model import one_process_model_parallel

    with one_process_model_parallel():  # seeds, which also makes Megatron's RNG tracker the CPU kind (compat.py)
        yield


def checkpoint_tensors(folder: Path) -> dict:
    """Every tensor of a dist_checkpointing folder by its global key, read with torch's own
    converter (no process group, no model needed)."""
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    target = folder.parent / f"{folder.name}.plain.pt"
    dcp_to_torch_save(str(folder), str(target))
    try:
        return {k: v for k, v in torch.load(target, weights_only=False).items() if torch.is_tensor(v)}
    finally:
        target.unlink()


def common_state_in_shards() -> bool:
    """Whether this megatron-core keeps the common state among the shards (0.19) rather than in
    `common.pt` (0.16): the library then reads a common.pt only as a legacy file."""
    from megatron.core.dist_checkpointing import serialization

    return hasattr(serialization, "_legacy_common_state_exists")


def common_state_places(folder: Path) -> list[str]:
    """Where a dist_checkpointing save keeps its common (non-sharded) state: `common.pt` beside the
    shards (megatron-core 0.16) or a `common_state` object among them (0.19); exactly one is expected."""
    from torch.distributed.checkpoint import FileSystemReader

    in_shards = [key for key in FileSystemReader(str(folder)).read_metadata().state_dict_metadata if key.startswith("common_state/")]
    return [*(["common.pt"] if (folder / "common.pt").is_file() else []), *in_shards]


def tiny_config(shards: Path, **overrides):
    """The tiny built-in on these shards, logging every step."""
    return load_train_config("tiny", {"data": {"shards": [str(shards)]}, "log_interval": 1, **overrides})


def train_records(run_dir: Path, kind: str = "train") -> list[dict]:
    """The run log's records of one kind."""
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


def final_weights(run_dir: Path) -> dict:
    """Every tensor of the newest checkpoint (model and optimizer moments) by global key."""
    from crawlmill.training.checkpoint import LATEST

    folder = run_dir / "checkpoints" / (run_dir / "checkpoints" / LATEST).read_text().strip()
    return checkpoint_tensors(folder / "model")


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
