"""training/lazy_save.py: a model-only checkpoint written from a meta-device model, each tensor
produced when it is written, is Megatron's own checkpoint of the filled model (the same `.metadata`
entries, the same tensors when Megatron loads it), and holds one parameter at a time."""

import gc
import pickle
import weakref
from pathlib import Path

import pytest
import torch

from crawlmill.training.config import builtin_model
from crawlmill.training.lazy_save import ProducingSave
from crawlmill.training.model import build_model
from crawlmill.training.run_model import one_process_model_parallel
from crawlmill.training.sharded_io import ShardedWriter, load_sharded

VOCAB = 512


def save(sharded: dict, folder: Path, strategy=None) -> None:
    writer = ShardedWriter(False, strategy=strategy)
    writer.save(sharded, folder)
    writer.close()


def entries(folder: Path) -> dict:
    """Every `.metadata` entry: a tensor's global size, chunks and dtype, or a bytes entry."""
    metadata = pickle.loads((folder / ".metadata").read_bytes())
    return {
        key: (tuple(m.size), sorted((tuple(c.offsets), tuple(c.sizes)) for c in m.chunks), m.properties.dtype) if hasattr(m, "chunks") else type(m).__name__
        for key, m in metadata.state_dict_metadata.items()
    }


def test_a_produced_checkpoint_is_megatrons_own_and_holds_one_parameter_at_a_time(tmp_path):
    model = builtin_model("tiny")
    with one_process_model_parallel():
        real = build_model(model, VOCAB, "bf16")
        weights = {name: p.detach().clone() for name, p in real.named_parameters()}
        save({"model": real.sharded_state_dict()}, tmp_path / "megatron")

        meta = build_model(model, VOCAB, "bf16", meta=True)
        assert {p.device.type for p in meta.parameters()} == {"meta"}
        alive: list[weakref.ref] = []
        produced: list[str] = []

        def produce(name: str) -> torch.Tensor:
            gc.collect()
            assert not [ref for ref in alive if ref() is not None], f"{name}: an earlier parameter is still held"
            produced.append(name)
            tensor = weights[name].clone()
            alive.append(weakref.ref(tensor))
            return tensor

        save({"model": meta.sharded_state_dict()}, tmp_path / "produced", ProducingSave(meta, produce))
        assert set(produced) == set(weights) and len(produced) <= len(weights) + model.num_layers  # linear_fc1's two halves at most twice
        assert entries(tmp_path / "produced") == entries(tmp_path / "megatron")

        fresh = build_model(model, VOCAB, "bf16")
        fresh.load_state_dict(load_sharded({"model": fresh.sharded_state_dict()}, tmp_path / "produced", False)["model"])
        loaded = dict(fresh.named_parameters())
        assert all(torch.equal(loaded[name], weights[name]) for name in weights)


def test_what_producing_raises_comes_out_as_it_is(tmp_path):
    model = builtin_model("tiny")
    with one_process_model_parallel():
        meta = build_model(model, VOCAB, "fp32", meta=True)

        def unreadable(name: str) -> torch.Tensor:
            raise ValueError(f"weights.bin: unreadable weights ({name})")

        with pytest.raises(ValueError, match=r"weights.bin: unreadable weights"):
            save({"model": meta.sharded_state_dict()}, tmp_path / "a", ProducingSave(meta, unreadable))
        with pytest.raises(ValueError, match=r"embedding.word_embeddings.weight is \(3, 3\), the model's \(512, 64\)"):
            save({"model": meta.sharded_state_dict()}, tmp_path / "b", ProducingSave(meta, lambda name: torch.zeros(3, 3)))
        with pytest.raises(ValueError, match="meta device"):
            ProducingSave(build_model(model, VOCAB, "fp32", initialize=False), lambda name: torch.zeros(1))
