"""safetensors files written tensor by tensor (training/safetensors_stream.py): the safetensors
library reads them back exactly, with their metadata; a tensor out of the plan, or a file left
short, is an error and leaves no file behind."""

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from crawlmill.training.safetensors_stream import SafetensorsWriter


def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(7, 5, generator=g).to(torch.bfloat16),
        "scale": torch.tensor(3.5),  # zero dimensions
        "lm_head.weight": torch.randn(5, 7, generator=g).t(),  # not contiguous
        "ids": torch.arange(-3, 6, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "half": torch.randn(2, 3, 1, generator=g).half(),
        "empty": torch.empty(0, 4),
    }


def plan(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: torch.empty(t.shape, dtype=t.dtype, device="meta") for n, t in named.items()}


def test_the_library_reads_what_was_written_tensor_by_tensor(tmp_path):
    named = tensors()
    path = tmp_path / "model.safetensors"
    with SafetensorsWriter(path, plan(named), {"format": "pt"}) as out:
        for name, tensor in named.items():
            out.write(name, tensor)
    loaded = load_file(path)
    assert loaded.keys() == named.keys()
    for name, tensor in named.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    with safe_open(str(path), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    header = int.from_bytes(path.read_bytes()[:8], "little")
    assert header % 8 == 0  # padded as the library pads
    reference = tmp_path / "reference.safetensors"
    save_file({n: t.contiguous() for n, t in named.items()}, str(reference), metadata={"format": "pt"})
    assert path.stat().st_size == reference.stat().st_size  # the same bytes, in another order


def test_out_of_plan_or_short_is_an_error_and_leaves_no_file(tmp_path):
    named = tensors()
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match=r"expected model\.embed_tokens\.weight \(7, 5\) torch\.bfloat16, got scale"):
        with SafetensorsWriter(path, plan(named)) as out:
            out.write("scale", named["scale"])
    assert not path.exists()
    with pytest.raises(ValueError, match="expected model.embed_tokens.weight"):
        with SafetensorsWriter(path, plan(named)) as out:
            out.write("model.embed_tokens.weight", named["model.embed_tokens.weight"].float())  # another dtype
    with pytest.raises(ValueError, match="1 of 7 planned tensors written"):
        with SafetensorsWriter(path, plan(named)) as out:
            out.write("model.embed_tokens.weight", named["model.embed_tokens.weight"])
    assert not path.exists()
    with pytest.raises(ValueError, match="complex64 has no safetensors name"):
        SafetensorsWriter(path, {"c": torch.empty(2, dtype=torch.complex64, device="meta")})
