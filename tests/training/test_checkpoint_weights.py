"""A checkpoint's weights read one layer at a time (training/checkpoint_weights.py): each read is one
layer's slice, the tensors are the checkpoint's own, and `crawlmill export` writes each file before
it reads the layers after it, so that its memory is a layer and a file, not the model."""

import pickle
from pathlib import Path

import pytest
import torch

from crawlmill.training import checkpoint_weights as weights_module
from crawlmill.training.checkpoint_weights import LAYERS, checkpoint_reader, checkpoint_weights, meta_weights, weight_shapes
from crawlmill.training.export_hf import export_run
from crawlmill.training.safetensors_stream import SafetensorsWriter
from crawlmill.training.trainer import train

from .conftest import checkpoint_tensors, tiny_config


@pytest.fixture(scope="module")
def trained_run(tiny_shards, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("weights") / "run"
    train(tiny_config(tiny_shards, max_steps=3, model={"num_layers": 3}), run)
    return run


def model_folder(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step-*"))[-1] / "model"


def spy_reads(monkeypatch) -> list[dict]:
    """Every read_slices request, in order."""
    reads: list[dict] = []
    real = weights_module.read_slices

    def recording(reader, requests):
        reads.append(requests)
        return real(reader, requests)

    monkeypatch.setattr(weights_module, "read_slices", recording)
    return reads


def test_each_read_is_one_layer_and_the_tensors_are_the_checkpoints(trained_run, monkeypatch):
    folder = model_folder(trained_run)
    reader = checkpoint_reader(folder)
    shapes = weight_shapes(reader)
    saved = checkpoint_tensors(folder)  # torch's own converter: every tensor, whole
    assert set(shapes) == {k for k in saved if not k.startswith("optimizer.")}  # the model's weights, no optimizer state
    reads = spy_reads(monkeypatch)

    metadata_reads = []
    read_metadata = type(reader).__mro__[1].read_metadata  # torch's FileSystemReader's
    monkeypatch.setattr(type(reader).__mro__[1], "read_metadata", lambda self, *a, **k: metadata_reads.append(1) or read_metadata(self, *a, **k))
    loaded = list(checkpoint_weights(reader, shapes))
    assert metadata_reads == []  # read once, by weight_shapes above: not again for each layer
    names = [name for name, _ in loaded]
    assert len(names) == len(set(names)) == 3 + 3 * sum(k.startswith(LAYERS) for k in shapes)  # embedding, final norm, output; 3 layers
    for name, tensor in loaded:
        if name.startswith(LAYERS):
            layer, rest = name[len(LAYERS) :].split(".", 1)
            assert torch.equal(tensor, saved[LAYERS + rest][int(layer)]), name
        else:
            assert torch.equal(tensor, saved[name]), name
    # one read per layer, each asking for a [1, ...] slice of the decoder weights
    layer_reads = [r for r in reads if any(k.startswith(LAYERS) for k in r)]
    assert len(layer_reads) == 3
    for index, request in enumerate(layer_reads):
        assert {offsets[0] for offsets, _, _ in request.values()} == {index}
        assert {shape[0] for _, shape, _ in request.values()} == {1}
    # the plan is what is read, in the same order, with no memory behind it
    planned = meta_weights(shapes)
    assert list(planned) == names
    assert all(t.device.type == "meta" and t.shape == dict(loaded)[n].shape and t.dtype == dict(loaded)[n].dtype for n, t in planned.items())


def test_export_writes_each_layer_before_it_reads_the_next(trained_run, monkeypatch, tmp_path):
    events: list[tuple[str, object]] = []
    real_read, real_write = weights_module.read_slices, SafetensorsWriter.write

    def read(reader, requests):
        layers = {offsets[0] for name, (offsets, _, _) in requests.items() if name.startswith(LAYERS)}
        events.append(("read", layers.pop() if layers else None))
        return real_read(reader, requests)

    def write(self, name, tensor):
        events.append(("write", name))
        return real_write(self, name, tensor)

    monkeypatch.setattr(weights_module, "read_slices", read)
    monkeypatch.setattr(SafetensorsWriter, "write", write)
    layer_bytes = sum(t.numel() * 2 for n, t in meta_weights(weight_shapes(checkpoint_reader(model_folder(trained_run)))).items() if n.startswith(f"{LAYERS}0."))
    export_run(str(trained_run), tmp_path / "hf", shard_bytes=layer_bytes)  # bf16: about a layer per file

    assert [layer for kind, layer in events if kind == "read" and layer is not None] == [0, 1, 2]
    for position, (kind, layer) in enumerate(events):
        if kind == "read" and layer:  # by the time layer k is read, every tensor of the layers before it is on disk
            written = [n for k, n in events[:position] if k == "write" and n.startswith("model.layers.")]
            assert sorted({int(n.split(".")[2]) for n in written}) == list(range(layer)) and len(written) == 9 * layer, events
    assert len(list((tmp_path / "hf").glob("model-*.safetensors"))) >= 3


class _CreatesFile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_metadata_that_would_run_code_is_refused(trained_run, tmp_path):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(model_folder(trained_run), folder)
    target = tmp_path / "created-by-the-checkpoint"
    (folder / ".metadata").write_bytes(pickle.dumps(_CreatesFile(target)))
    with pytest.raises(ValueError, match=r"\.metadata: refused: a checkpoint's metadata holds only checkpoint metadata"):
        checkpoint_reader(folder)
    assert not target.exists()
    with pytest.raises(FileNotFoundError, match="no .metadata"):
        checkpoint_reader(tmp_path)
