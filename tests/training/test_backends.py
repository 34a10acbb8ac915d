"""The GPU backend (training/backends.py, MegatronBackend) on CPU: what it does to Megatron's
optimizer, with the pieces it acts on (Megatron's own parameter groups; torch's Adam, which Megatron's
DistributedOptimizer wraps where neither Transformer Engine nor Apex is installed), and the whole
backend through a probe process that maps CUDA to the CPU (cuda_on_cpu.py): steps against the CPU
backend, and a save and resume. CUDA kernels themselves run only on a GPU (scripts/gpu_check.sh).
The probes start once for all their checks (torch and Megatron take seconds to import): one process
for both precisions, one torchrun launch for the three two-rank checks; each test reads its own
check's results, and one that did not finish fails naming the check that stopped the launch."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from crawlmill.training.backends import fill_fresh_adam_state, restore_adam_steps, set_group_hyperparameters
from crawlmill.training.model_config import ModelConfig

pytestmark = pytest.mark.heavy(55)  # seconds on 2 cores (a probe process and a torchrun launch; 100 with a launch a check): started early

HERE = Path(__file__).parent
PRECISIONS = ["fp32", "bf16"]
TWO_RANK_CHECKS = ["context", "pipeline", "reshard"]  # two_rank_checks.py


def test_megatrons_parameter_groups_decay_the_matrices_alone_as_the_cpu_backend(model_parallel):
    """Megatron's optimizer gets one weight decay for every group and marks the norms' groups
    `wd_mult` 0 for its LR scheduler to apply; without that scheduler the norms decayed too."""
    from megatron.core.optimizer import OptimizerConfig as MegatronOptimizerConfig
    from megatron.core.optimizer import _get_param_groups, get_standard_config_overrides

    from crawlmill.training.model import build_model

    model = build_model(ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=2, ffn_hidden_size=128, seq_length=32), vocab_size=256)
    config = MegatronOptimizerConfig(lr=1e-3, weight_decay=0.1)
    groups = _get_param_groups([model], config, get_standard_config_overrides(config))  # as get_megatron_optimizer makes them
    adam = torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.1)  # as get_megatron_optimizer builds it
    decayed = lambda: {id(p) for g in adam.param_groups if g["weight_decay"] > 0 for p in g["params"]}  # noqa: E731
    matrices = {id(p) for p in model.parameters() if p.ndim >= 2}
    assert decayed() == {id(p) for p in model.parameters()}  # what Megatron's groups alone give
    set_group_hyperparameters(adam.param_groups, 2e-4, 0.1)
    assert decayed() == matrices and len(matrices) < len(list(model.parameters()))
    assert {g["weight_decay"] for g in adam.param_groups} == {0.0, 0.1} and {g["lr"] for g in adam.param_groups} == {2e-4}


def _params(seed: int) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=generator)), torch.nn.Parameter(torch.randn(5, generator=generator))]


def _steps(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], grads: list[list[torch.Tensor]]) -> None:
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        optimizer.step()


@pytest.mark.parametrize("template_step", [3.0, 0.0])
@pytest.mark.parametrize("restored", [True, False])
def test_a_resumed_adam_as_megatron_hands_it_over_continues_as_the_straight_one(restored, template_step):
    """Megatron's DistributedOptimizer.load_state_dict puts one step tensor in every parameter's
    state, holding the saved step (3) or, from a dp_reshardable checkpoint, the load template's 0;
    torch keeps it shared and Adam counts it once per parameter each step. The saved step is in the
    parameter groups: restore_adam_steps gives each parameter its own, and the run goes on bitwise."""
    generator = torch.Generator().manual_seed(0)
    grads = [[torch.randn(4, 3, generator=generator), torch.randn(5, generator=generator)] for _ in range(6)]
    adam = lambda params: torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)  # noqa: E731
    straight = _params(1)
    first = adam(straight)
    _steps(first, straight, grads[:3])
    saved = copy.deepcopy(first.state_dict())  # as read from a checkpoint: no tensor of `first`'s
    step = torch.tensor(template_step)
    for state in saved["state"].values():
        state["step"] = step  # as Megatron hands the state to torch's load_state_dict
    for group in saved["param_groups"]:
        group["step"] = 3  # where Megatron's state_dict() keeps it
    resumed = [torch.nn.Parameter(p.detach().clone()) for p in straight]
    second = adam(resumed)
    second.load_state_dict(saved)
    if restored:
        restore_adam_steps(second)
    _steps(first, straight, grads[3:])
    _steps(second, resumed, grads[3:])
    steps = [float(s["step"]) for s in second.state.values()]
    same = all(torch.equal(a, b) for a, b in zip(straight, resumed, strict=True))
    if restored:
        assert steps == [6.0, 6.0] and same
    else:  # the failure restore_adam_steps prevents: one step counted per parameter, from 3 or from 0
        assert not same


def test_a_fresh_adams_filled_state_is_what_its_first_step_would_find():
    """The template a checkpoint loads into needs a state per parameter (Megatron's state_dict()
    asserts one step over them); filled, an optimizer still steps as a fresh one, bit for bit."""
    generator = torch.Generator().manual_seed(2)
    grads = [[torch.randn(4, 3, generator=generator), torch.randn(5, generator=generator)] for _ in range(2)]
    fresh, filled = _params(3), _params(3)
    a, b = torch.optim.AdamW(fresh, lr=1e-2), torch.optim.AdamW(filled, lr=1e-2)

    def zero_moments(opt: torch.optim.Optimizer) -> None:  # Megatron's init_state_fn for Adam
        for group in opt.param_groups:
            for p in group["params"]:
                opt.state[p]["exp_avg"], opt.state[p]["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)

    fill_fresh_adam_state(b, zero_moments)
    assert [sorted(s) for s in b.state.values()] == [["exp_avg", "exp_avg_sq", "step"]] * 2
    assert len({float(s["step"]) for s in b.state_dict()["state"].values()}) == 1  # what Megatron asserts
    _steps(a, fresh, grads)
    _steps(b, filled, grads)
    assert all(torch.equal(x, y) for x, y in zip(fresh, filled, strict=True))
    before = {id(s["step"]) for s in b.state.values()}
    fill_fresh_adam_state(b, zero_moments)  # a stepped optimizer is left as it is
    assert {id(s["step"]) for s in b.state.values()} == before


@dataclass
class Checks:
    """What one probe process or launch that runs several checks in turn left: each check's JSON line
    by name, the checks begun (in order), its exit status (None: killed at its time limit), its stderr."""

    results: dict
    begun: list[str]
    returncode: int | None
    stderr: str
    work: Path  # each check's work folder is WORK/NAME

    def of(self, name: str):
        """`name`'s results, where it finished: its line printed, and then the next check begun or the
        launch ended with 0. Otherwise the test fails, naming the check that stopped the launch."""
        if name in self.results and (self.returncode == 0 or self.begun[-1] != name):
            return self.results[name]
        ended = "timed out (a hang)" if self.returncode is None else f"exited with {self.returncode}"
        stopped = self.begun[-1] if self.begun else None
        where = "in this check" if stopped == name else f"in check {stopped}, before this one ran" if stopped else "before any check began"
        pytest.fail(f"{name}: the probe {ended} {where}\n{self.stderr[-3000:]}")


def run_checks(command: list[str], names: list[str], work: Path, timeout: int, **env: str) -> Checks:
    """`COMMAND WORK NAME...`: a probe that prints `check NAME` as each check begins and its results as
    the last line after it (megatron_backend_probe.py, two_rank_checks.py). A hang ends every rank."""
    process = subprocess.Popen([*command, str(work), *names], cwd=HERE, env={**os.environ, "PYTHONPATH": str(HERE), **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        returncode = process.returncode
    except subprocess.TimeoutExpired:  # ranks waiting on each other: end them all, not only torchrun
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        returncode = None
    begun, printed = [], {}
    for line in stdout.splitlines():
        if line.startswith("check "):
            begun.append(line.removeprefix("check "))
            printed[begun[-1]] = []
        elif begun and line.strip():
            printed[begun[-1]].append(line)
    results = {}
    for name, lines in printed.items():
        try:
            results[name] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):  # the check stopped before its line: not finished
            pass
    return Checks(results, begun, returncode, stderr, work)


@pytest.fixture(scope="module")
def backend_checks(tmp_path_factory) -> Checks:
    """megatron_backend_probe.py on each precision in turn, in one process."""
    return run_checks([sys.executable, str(HERE / "megatron_backend_probe.py")], PRECISIONS, tmp_path_factory.mktemp("backend"), timeout=300)


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_gpu_backend_steps_as_the_cpu_one_and_resumes_bitwise(precision, backend_checks):
    """MegatronBackend (Megatron's DistributedDataParallel and distributed optimizer over torch Adam,
    as on a GPU without Transformer Engine or Apex), run on CPU by tests/training/cuda_on_cpu.py:
    in fp32 its losses and gradient norms are the CPU backend's and its weights within float
    rounding (weight decay 0.5 on the matrices alone); saved after 2 steps and loaded into a fresh
    backend, its third step is bitwise the straight run's, with Adam's step count restored. Each
    of the faults fixed here (decay on the norms, the fresh template's missing state, the shared
    step tensor, the template's step 0 copied over the saved one, the in-place copy into a
    grad-requiring view) fails this test."""
    result = backend_checks.of(precision)
    assert result["resumed_equal"] and result["resumed_step"] == result["megatron"][2]
    assert result["adam_steps"] == [[3.0], [3.0]]
    if precision == "fp32":
        for (loss, norm), (cpu_loss, cpu_norm) in zip(result["megatron"], result["torch"], strict=True):
            assert loss == pytest.approx(cpu_loss, rel=1e-6) and norm == pytest.approx(cpu_norm, rel=1e-6)
        assert result["weights_max_difference"] < 1e-5


@pytest.fixture(scope="module")
def two_rank_checks(tmp_path_factory) -> Checks:
    """The context, pipeline and reshard probes in one launch on two torchrun ranks (gloo, CPU; two_rank_checks.py)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29547", str(HERE / "two_rank_checks.py")]
    return run_checks(launcher, TWO_RANK_CHECKS, tmp_path_factory.mktemp("two-ranks"), timeout=600, OMP_NUM_THREADS="1")


def _two_rank_probe(checks: Checks, name: str) -> list[dict]:
    """What a two-rank check reported (two_rank_probe.report), by rank."""
    results = checks.of(name)
    assert [r["rank"] for r in results] == [0, 1]
    return results


def _steps_as_one_rank(results: list[dict]) -> None:
    """Each rank's losses, gradient norms and validation sums are the one-rank CPU backend's, and its
    weights within Adam's amplification of float rounding."""
    for result in results:
        for (loss, norm), (cpu_loss, cpu_norm) in zip(result["megatron"], result["torch"], strict=True):
            assert loss == pytest.approx(cpu_loss, rel=1e-6) and norm == pytest.approx(cpu_norm, rel=1e-5)
        (summed, tokens), (cpu_summed, cpu_tokens) = result["evaluate"], result["torch_evaluate"]
        assert tokens == cpu_tokens and summed == pytest.approx(cpu_summed, rel=1e-6)
        assert result["weights_max_difference"] < 2e-3


def test_the_gpu_backend_with_context_parallelism_steps_as_one_rank_holding_whole_sequences(two_rank_checks):
    """MegatronBackend on two torchrun ranks with context parallelism 2 (Megatron's DDP and
    distributed optimizer over the data x context group, the local spec's all-gather attention,
    Megatron's own RoPE cut of the GPU path), on CPU through tests/training/cuda_on_cpu.py: losses,
    gradient norms and the validation sums of the CPU backend on one rank with whole sequences, with
    a random loss mask; weights within Adam's amplification of float rounding (a batch cut other than
    Megatron's layout moves them by 0.06 and the first loss by 2e-3)."""
    _steps_as_one_rank(_two_rank_probe(two_rank_checks, "context"))


def test_the_gpu_backend_with_pipeline_parallelism_steps_as_one_rank_holding_the_whole_model(two_rank_checks):
    """MegatronBackend on two torchrun ranks with pipeline parallelism 2 (Megatron's 1F1B schedule,
    activations and their gradients sent between the stages over gloo, one decoder layer a stage,
    the embedding on the first and the output layer on the second), on CPU through
    tests/training/cuda_on_cpu.py, from the whole model's initial weights: losses, gradient norms and
    the validation sums of the CPU backend on one rank, on both stages (the loss is the last
    stage's, summed to the others); weights within Adam's amplification of float rounding (the
    embedding's rarely seen rows move most)."""
    _steps_as_one_rank(_two_rank_probe(two_rank_checks, "pipeline"))


def _tensors(folder: Path) -> dict:
    """A dist_checkpointing folder's tensors by global key, whole (torch's DCP format reader)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(str(folder), str(folder) + ".pt")
    return {k: v for k, v in torch.load(str(folder) + ".pt", weights_only=False).items() if isinstance(v, torch.Tensor)}


def test_the_gpu_backends_checkpoint_resumes_on_another_tensor_parallel_size_when_fully_reshardable(two_rank_checks):
    """MegatronBackend on two torchrun ranks (CPU, tests/training/cuda_on_cpu.py): two steps on data
    parallel 2, a save in each sharding type (checkpoint.optimizer_sharding), a third step; a fresh
    backend of other initial weights on tensor parallel 2 loads a save and takes the same third step.
    fully_reshardable: the loss and gradient norm are the straight run's, and its save after the step
    holds the straight run's weights, fp32 master weights and Adam moments, key by key, to float
    rounding (the step itself moved them by ~1e-2). Megatron's own load fails on torch Adam's step
    without backends.steps_left_alone. The same states gathered on rank 0 alone
    (optimizer_gather_on_one_rank) save the same tensors and load on tensor parallel 2, bit for bit.
    dp_reshardable: Megatron cannot load it (its other data-parallel group's buffers are missing):
    layout.py refuses it before any load."""
    results = _two_rank_probe(two_rank_checks, "reshard")
    work = two_rank_checks.work / "reshard"
    refused = [r["dp_reshardable"] for r in results]
    assert all(r.get("load_error") for r in refused), refused
    missing = {key for r in refused for key in r["missing"]}  # each rank reports what failed where (0.16: both ranks; 0.19: its own)
    assert missing and all(key.startswith("optimizer.distributed.dp_group_idx_1.") for key in missing), refused
    for result in results:
        assert "load_error" not in result["fully_reshardable"], result
        (loss, norm), (resumed_loss, resumed_norm) = result["straight"], result["fully_reshardable"]["resumed"]
        assert resumed_loss == pytest.approx(loss, rel=1e-6) and resumed_norm == pytest.approx(norm, rel=1e-5)
    straight, resumed, saved = (_tensors(work / name) for name in ("straight", "resumed", "fully_reshardable"))
    assert straight.keys() == resumed.keys() and any(k.startswith("optimizer.state.exp_avg_sq.") for k in straight)
    for key, tensor in straight.items():
        assert float((resumed[key] - tensor).abs().max()) < 2e-5, key
        if key.startswith(("optimizer.state.param.", "optimizer.state.exp_avg.")):
            assert float((saved[key] - tensor).abs().max()) > 1e-4, key  # the third step moved it
    for name in ("gathered", "gathered_reloaded"):  # gathered on rank 0 alone, and that loaded on tensor parallel 2: bit for bit
        other = _tensors(work / name)
        assert other.keys() == straight.keys() and all(torch.equal(other[key], tensor) for key, tensor in straight.items()), name
