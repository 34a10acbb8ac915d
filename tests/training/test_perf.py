"""MFU's FLOP counts and peaks, and the step profiler (training/perf.py)."""

import gzip
import json

import pytest
import torch

from crawlmill.training.config import ProfileConfig, load_train_config
from crawlmill.training.model_config import ModelConfig
from crawlmill.training.perf import StepProfiler, megatron_flops_per_token, peak_flops, utilisation


def matmul_flops_per_token(m: ModelConfig, vocab: int) -> float:
    """Counted matrix by matrix: 2 FLOPs a multiply-add, forward and backward 3 x forward; attention's
    scores and weighted values over the whole sequence (no causal halving, as Megatron-LM counts)."""
    d, kv = m.hidden_size, m.query_groups * m.head_dim
    per_layer = d * (d + 2 * kv) + d * d + 3 * d * m.ffn_hidden_size + 2 * m.seq_length * d  # qkv, proj, SwiGLU, attention
    return 3 * 2 * (m.num_layers * per_layer + d * vocab)


@pytest.mark.parametrize("name", ["1b", "deepseek-7b", "deepseek-67b"])  # 67b: grouped-query attention
def test_megatron_flops_are_the_models_matrix_products(name):
    model = load_train_config(name).model
    assert megatron_flops_per_token(model, 102_400) == pytest.approx(matmul_flops_per_token(model, 102_400), rel=1e-12)


def test_megatron_count_exceeds_deepseeks_m_by_the_output_layer():
    model = load_train_config("1b").model
    extra = megatron_flops_per_token(model, 102_400) - model.non_embedding_flops_per_token()
    # M counts the MLP as 8·d² (4d wide, ungated): the 1b's SwiGLU 5504 is 3·5504·d, a little more
    mlp_difference = 6 * model.num_layers * (3 * model.hidden_size * 5504 - 8 * model.hidden_size**2)
    assert extra == pytest.approx(6 * 2048 * 102_400 + mlp_difference, rel=1e-12)
    assert 1.12 < megatron_flops_per_token(model, 102_400) / model.non_embedding_flops_per_token() < 1.15


def test_peaks_by_device_name_and_the_override(monkeypatch):
    monkeypatch.delenv("CRAWLMILL_PEAK_TFLOPS", raising=False)
    assert peak_flops("NVIDIA H200") == 989e12 and peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("Some New Accelerator") is None and utilisation({"M": 1e9}, 1e5, "Some New Accelerator") == {}
    figures = utilisation({"M": 9e9, "megatron": 1e10}, 40_000, "NVIDIA H200")
    assert figures == {"mfu": round(9e9 * 40_000 / 989e12, 4), "mfu_megatron": round(1e10 * 40_000 / 989e12, 4), "tflops_per_gpu": 400.0}
    assert utilisation({"M": 9e9, "megatron": 1e10}, 40_000, "Some New Accelerator") == {"tflops_per_gpu": 400.0}  # no peak, no MFU
    monkeypatch.setenv("CRAWLMILL_PEAK_TFLOPS", "500")
    assert peak_flops("Some New Accelerator") == 500e12
    monkeypatch.setenv("CRAWLMILL_PEAK_TFLOPS", "fast")
    with pytest.raises(ValueError, match="CRAWLMILL_PEAK_TFLOPS='fast'"):
        peak_flops("NVIDIA H200")


def test_the_profiler_records_its_window_of_steps_on_its_ranks(tmp_path):
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    mine = StepProfiler(ProfileConfig(start_step=2, steps=2, ranks=[0]), rank=0, folder=tmp_path / "profile")
    other = StepProfiler(ProfileConfig(start_step=2, steps=2, ranks=[0]), rank=1, folder=tmp_path / "other")
    windows = []
    for step in range(6):
        for profiler in (mine, other):
            profiler.before(step)
        a = torch.tanh(a @ b)
        for profiler in (mine, other):
            profiler.after(step)
        windows.append(mine.profile is not None)
    assert windows == [False, False, True, False, False, False]  # open through step 3's `after` only
    table = (tmp_path / "profile/rank0-step2.txt").read_text()
    assert "aten::mm" in table and "aten::tanh" in table
    with gzip.open(tmp_path / "profile/rank0-step2.json.gz", "rt") as trace:
        events = json.load(trace)["traceEvents"]
    assert sum(e.get("name") == "aten::mm" for e in events) == 2  # one a step: steps 2 and 3, no more
    assert not (tmp_path / "other").exists()


def test_profile_config_is_checked():
    from crawlmill.pipeline.config import ConfigError, build
    from crawlmill.training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"train.profile: start_step -1"):
        build(TrainConfig, {"profile": {"start_step": -1}}, "train")
    with pytest.raises(ConfigError, match=r"train.profile: steps and rows at least 1"):
        build(TrainConfig, {"profile": {"start_step": 0, "ranks": []}}, "train")


def test_a_profiler_that_fails_leaves_the_run_alone(tmp_path, monkeypatch, capsys):
    import torch.profiler

    class Broken:
        def __init__(self, **_):
            raise RuntimeError("CUPTI_ERROR_INSUFFICIENT_PRIVILEGES")

    monkeypatch.setattr(torch.profiler, "profile", Broken)
    profiler = StepProfiler(ProfileConfig(start_step=0, steps=1), rank=0, folder=tmp_path / "profile")
    profiler.before(0)
    profiler.after(0)
    profiler.close()
    assert not profiler.enabled and not (tmp_path / "profile").exists()
    assert "could not start the profile (RuntimeError: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES)" in capsys.readouterr().err
