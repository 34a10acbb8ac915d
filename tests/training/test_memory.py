"""The memory estimate (training/memory.py) against what the model really keeps: the activations
against autograd's saved tensors, the states against the CPU optimizer's tensors, byte for byte."""

import json
from dataclasses import replace
import os
import signal
import subprocess
import sys

import pytest
import torch

from crawlmill.training.config import load_train_config
from crawlmill.training.memory import GIB, bytes_per_parameter, estimate_memory, kept_activations, rank_parameters, too_large
from crawlmill.training.model_config import ModelConfig
from tests.training.memory_probe import CONTEXT_CASES, PIPELINE_CASES, SPLIT_CASES, VOCAB, saved_by_autograd


SETTINGS = [
    {},
    {"num_query_groups": 2},
    {"attention": "megatron"},
    {"attention": "megatron", "num_query_groups": 2},
    {"fused_kernels": True},
    {"recompute": "full"},
    {"recompute": "full", "recompute_layers": 3},
    {"recompute": "selective", "recompute_modules": ["core_attn"]},
    {"recompute": "selective", "recompute_modules": ["mlp"], "attention": "megatron"},
    {"recompute": "selective", "recompute_modules": ["core_attn", "mlp"]},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_activations_are_what_autograd_keeps(model_parallel, settings):
    """Two shapes each (the estimate must scale with layers, micro batch and sequence, not fit one):
    within 0.5%, the rest being the loss's own few bytes a token."""
    for layers, micro_batch, seq in ((3, 2, 128), (6, 1, 64)):
        config = ModelConfig(**{"num_layers": layers, "hidden_size": 256, "num_attention_heads": 4, "ffn_hidden_size": 688, "seq_length": seq, **settings})
        measured, _ = saved_by_autograd(config, micro_batch)
        estimated = kept_activations(config, VOCAB, micro_batch, 4, fused=config.fused(False), mask=True)
        assert estimated == pytest.approx(measured, rel=0.005), (layers, micro_batch, seq)


def test_recomputation_keeps_less(model_parallel):
    """What the options are for, in the estimate and in the model alike."""
    base = {"num_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "ffn_hidden_size": 688, "seq_length": 128}
    kept = {name: saved_by_autograd(ModelConfig(**base, **extra), 2)[0] for name, extra in
            [("none", {}), ("mlp", {"recompute": "selective", "recompute_modules": ["mlp"]}), ("full", {"recompute": "full"})]}  # fmt: skip
    assert kept["full"] < kept["mlp"] < kept["none"]


def test_tensor_and_context_parallel_ranks_keep_and_hold_what_the_estimate_splits():
    """Two gloo ranks (torchrun), tensor parallel: each rank's kept activations (attention and MLP
    split, norms whole: no sequence parallelism without Transformer Engine) and parameters; then
    context parallel: the most loaded rank's kept activations; then pipeline parallel: each stage's
    (the first exactly, the last within the loss's few bytes a token, its logits counted)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29541", "-m", "tests.training.memory_probe"]
    process = subprocess.Popen(launcher, env={**os.environ, "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:  # ranks waiting on each other: end them all, not only torchrun
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the ranks did not finish in 240 s\n{process.communicate()[1][-3000:]}")
    assert process.returncode == 0, stderr[-3000:]
    results = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    split = [r for r in results if "context" not in r and "stages" not in r]
    assert [(r["settings"], r["micro_batch"]) for r in split] == SPLIT_CASES
    for result in split:
        config = ModelConfig(**result["settings"])
        assert kept_activations(config, VOCAB, result["micro_batch"], 4, tensor=2, mask=True) == pytest.approx(result["kept"], rel=0.005)
        assert rank_parameters(config, VOCAB, tensor=2) == result["parameters"]
    # context parallel: a rank's half of each sequence, plus the whole sequence's gathered keys and values
    context = [r for r in results if "context" in r]
    assert [(r["settings"], r["micro_batch"]) for r in context] == CONTEXT_CASES
    for result in context:
        config = ModelConfig(**result["settings"])
        share = replace(config, seq_length=config.seq_length // 2)
        assert kept_activations(share, VOCAB, result["micro_batch"], 4, mask=True, context=2) == pytest.approx(result["kept"], rel=0.005)
        if config.recompute == "none":  # the gathered keys and values are what the share alone does not count
            assert result["kept"] > kept_activations(share, VOCAB, result["micro_batch"], 4, mask=False) * 1.03
    # pipeline parallel: each stage its half of the layers; the first the embedding, the last the output side and the logits
    pipeline = [r for r in results if "stages" in r]
    assert [(r["settings"], r["micro_batch"]) for r in pipeline] == PIPELINE_CASES
    for result in pipeline:
        config = ModelConfig(**result["settings"])
        (first, first_parameters), (last, last_parameters) = result["stages"]
        for kept, output in ((first, False), (last, True)):
            assert kept_activations(config, VOCAB, result["micro_batch"], 4, pipeline=2, mask=True, output=output) == pytest.approx(kept, rel=0.005)
        assert last_parameters == rank_parameters(config, VOCAB, pipeline=2) and first_parameters == last_parameters - config.hidden_size


def test_states_are_the_cpu_optimizers_tensors(model_parallel):
    """After one CPU step: weights, gradients and AdamW's two moments, byte for byte."""
    from megatron.core import parallel_state

    from crawlmill.training.backends import TorchBackend
    from crawlmill.training.config import OptimizerConfig
    from crawlmill.training.model import build_model

    config = load_train_config("tiny", {"model": {"num_query_groups": 2}, "micro_batch_size": 2, "precision": "fp32"})
    model = build_model(config.model, VOCAB)
    backend = TorchBackend(model, OptimizerConfig(), 1e-3, torch.device("cpu"), parallel_state.get_data_parallel_group(), parallel_state.get_model_parallel_group())
    s = config.model.seq_length
    tokens = torch.randint(0, VOCAB, (2, s + 1), generator=torch.Generator().manual_seed(0))
    backend.step([{"tokens": tokens[:, :-1], "labels": tokens[:, 1:], "position_ids": torch.arange(s).expand(2, -1), "loss_mask": torch.ones(2, s)}], 1e-3)
    held = sum(p.nbytes + p.grad.nbytes for p in model.parameters())
    held += sum(v.nbytes for state in backend.optimizer.state.values() for k, v in state.items() if k != "step")  # the step counters: 4 bytes each
    estimate = estimate_memory(config, VOCAB, data_parallel=1, cuda=False)
    assert estimate.states == held and estimate.parameters == sum(p.numel() for p in model.parameters())


def test_rank_parameters_split_over_tensor_and_pipeline_ranks():
    model = load_train_config("deepseek-7b").model
    total = model.parameters(102_400)["total"]
    assert rank_parameters(model, 102_400) == total
    norms = 2 * 4096  # per layer, whole on every tensor rank
    assert rank_parameters(model, 102_400, tensor=4) == (total - 30 * norms - 4096) // 4 + 30 * norms + 4096
    # pipeline: a stage's 15 layers with the output layer and final norm (the last stage; the first's embedding is as large)
    per_layer = (total - 2 * 102_400 * 4096 - 4096) // 30
    assert rank_parameters(model, 102_400, pipeline=2) == 15 * per_layer + 102_400 * 4096 + 4096


def test_with_pipeline_parallelism_the_more_loaded_of_the_first_and_last_stage_is_the_estimate():
    """1F1B: the first stage holds a micro-batch in flight per stage, the last one only one but also
    the output layer, the final norm and the loss's logits; with one micro-batch a rank a step the
    last stage needs more (before: the first stage's activations with the last stage's weights, the
    2.3 GiB of logits and their gradient left out for the 7B)."""
    seven = load_train_config("deepseek-7b", {"parallel": {"pipeline": 2}})
    seq, d = seven.model.seq_length, seven.model.hidden_size
    one = lambda output: kept_activations(seven.model, 102_400, 1, 2, pipeline=2, fused=seven.model.fused(True), output=output)  # noqa: E731 - bf16 on a GPU
    assert one(True) - one(False) > 4 * seq * 102_400  # the fp32 logits, on the last stage only
    last = estimate_memory(seven, 102_400, data_parallel=8, global_batch=8)  # one micro-batch a rank
    assert (last.pipeline_stage, last.micro_batches_in_flight) == ("last", 1)
    assert last.parameters == rank_parameters(seven.model, 102_400, pipeline=2) and last.activations == one(True)
    assert last.output_gradient == 2 * seq * 102_400 and "on the last pipeline stage" in last.describe()
    first = estimate_memory(seven, 102_400, data_parallel=8, global_batch=16)  # two: the first stage holds both
    assert (first.pipeline_stage, first.micro_batches_in_flight) == ("first", 2)
    assert first.parameters == last.parameters - d and first.activations == 2 * one(False) and first.output_gradient == 0
    assert first.total > last.total and estimate_memory(load_train_config("deepseek-7b"), 102_400).pipeline_stage == "all"


def test_bytes_per_parameter_are_megatrons():
    """Megatron-LM's theoretical memory: 18 bytes a parameter, 6 + 12/DP with the distributed optimizer."""
    assert bytes_per_parameter("bf16", True, 1) == 18 and bytes_per_parameter("bf16", True, 64) == 6 + 12 / 64
    assert bytes_per_parameter("fp32", False, 8) == 16  # torch AdamW on CPU: nothing sharded


def test_what_the_builtin_configs_need_on_a_gpu():
    """The GPU benchmark's 1b (micro batch 4) must fit an 80 GB H100 (79.6 GiB, 1 GiB for the CUDA
    context); the 7B needs its data-parallel ranks to share the optimizer (Megatron's distributed
    optimizer) to fit one; full recomputation makes the difference it should."""
    one_b = load_train_config("1b")
    assert estimate_memory(one_b, 102_400, data_parallel=1).total < 78 * GIB
    seven = load_train_config("deepseek-7b")
    assert estimate_memory(seven, 102_400, data_parallel=1).total > 80 * GIB  # 6.9B x 18 bytes alone: 116 GiB
    assert estimate_memory(seven, 102_400, data_parallel=64).total < 78 * GIB
    full = load_train_config("1b", {"model": {"recompute": "full"}})
    assert estimate_memory(full, 102_400).activations < estimate_memory(one_b, 102_400).activations / 3
    sixty_seven = load_train_config("deepseek-67b")  # tensor 8, pipeline 5: five micro-batches in flight on the first stage
    estimate = estimate_memory(sixty_seven, 102_400, data_parallel=16)  # its 4,608 sequences: 288 micro-batches a rank
    assert estimate.micro_batches_in_flight == 5 and estimate.total < 78 * GIB


def test_a_run_that_will_not_fit_is_told_so_at_the_start():
    """What the trainer prints on a GPU when the estimate exceeds the device (less 1 GiB for CUDA)."""
    estimate = estimate_memory(load_train_config("deepseek-7b"), 102_400, data_parallel=1)
    h100 = 79.6 * GIB
    assert "expect an out-of-memory error" in too_large(estimate, h100) and "estimated at 137.2 GiB" in too_large(estimate, h100)
    assert too_large(estimate_memory(load_train_config("deepseek-7b"), 102_400, data_parallel=64), h100) is None
