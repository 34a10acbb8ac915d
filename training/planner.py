"""The scaling-law planner (DeepSeek LLM, Section 3): from a compute budget C (FLOPs), the optimal
peak learning rate, batch size, model scale and data (Equation 1 and the allocation), and a real
Megatron model shape and global batch for them; for an existing model and token count, its M beside
6N₁ and 6N₂ (the paper's Table 3) and the hyperparameters Equation 1 gives for its compute.

    crawlmill plan --compute 1e20                       # M_opt, D_opt, η_opt, B_opt and a model shape
    crawlmill plan --model deepseek-7b --tokens 2e12    # M, 6N₁, 6N₂, C = M·D, η_opt, B_opt
    python -c "from crawlmill.training.planner import plan_compute; print(plan_compute(1e20))"

Model scale M is DeepSeek's non-embedding FLOPs per token, 72·n_layer·d² + 12·n_layer·d·l_seq
(ModelConfig.non_embedding_flops_per_token), and C = M·D with D in tokens. The laws, C in FLOPs:

    η_opt = 0.3118·C^−0.1250     B_opt = 0.2920·C^0.3271 (tokens)
    M_opt = 0.1715·C^0.5243      D_opt = 5.8316·C^0.4757

Shape rule (`snap_model`): head dim 128, so d_model is a multiple of 128 and heads = d_model/128;
SwiGLU ffn = 8/3·d_model rounded up to a multiple of 256 (this gives DeepSeek's 11008 for 4096 and
22016 for 8192 exactly; 8/3·d with three matrices keeps the 8·d² per layer that M's 72·d² assumes).
Depth follows width by an aspect ratio d_model/n_layer interpolated (log-linearly in d_model) between
the repository's built-in models: 125m (12 × 768, ratio 64, GPT-3 Small), 1b (24 × 2048, 85),
DeepSeek 7B (30 × 4096, 137) and DeepSeek 67B (95 × 8192, 86), held constant outside 768–8192.
Every width is tried with the whole number of layers that comes closest to M_opt, keeping depths
within ×2 of the rule's; the choice minimises |ln(M/M_opt)| + 0.1·|ln(layers/rule's layers)|: M is
what the law prescribes, while loss is flat over a wide band of aspect ratios (Kaplan et al. 2020,
Figure 5: a few percent over ratios 20–200), so a 10% depth deviation weighs as much as a 1% M
deviation. M_opt equal to the 7B's or 67B's M gives back exactly their Table 2 shapes (tested).

With tensor parallelism T (`--tensor-parallel`), Megatron splits heads and ffn across T ranks: d_model
is then a multiple of 128·T (heads a multiple of T) and ffn of lcm(256, T); with pipeline
parallelism P, layers a multiple of P. Without them a budget's heads are whatever d_model/128 is
(71 at 1e24: a prime, no tensor split).

Global batch: B_opt / seq_length rounded to the nearest multiple of micro batch × data-parallel size
(at least one), the whole number of sequences Megatron accepts (global_batch_size must be divisible
by micro_batch_size × data_parallel_size).

Light on purpose: no torch, no Megatron; the whole module is arithmetic on ModelConfig.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .model_config import ModelConfig

HEAD_DIM = 128
FFN_MULTIPLE = 256
DEFAULT_SEQ_LENGTH = 4096
DEFAULT_VOCAB_SIZE = 102_400
# (d_model, n_layer) of the built-in models (training/configs/): the depth-for-width rule's anchors.
ASPECT_ANCHORS: tuple[tuple[int, int], ...] = ((768, 12), (2048, 24), (4096, 30), (8192, 95))
ASPECT_WEIGHT = 0.1  # cost of ln(depth / rule's depth) relative to ln(M / M_opt)
MAX_WIDTH = 64 * 1024
SMALLEST_FITTED_COMPUTE = 1e17  # the paper's smallest budget (its Figure 2's grid search)
# The largest run the paper checked its laws on: the 67B (95 x 8192, M 4.97e11) on 2e12 tokens. Like the
# plan's other tolerances, ×2 of it still counts as near.
LARGEST_CHECKED_COMPUTE = (72 * 95 * 8192**2 + 12 * 95 * 8192 * 4096) * 2e12


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient · C^exponent."""

    coefficient: float
    exponent: float

    def __call__(self, compute: float) -> float:
        return self.coefficient * compute**self.exponent


@dataclass(frozen=True)
class ScalingLaws:
    """DeepSeek LLM's Equation 1 (η_opt, B_opt) and model/data allocation (M_opt, D_opt)."""

    lr: PowerLaw = PowerLaw(0.3118, -0.1250)
    batch_tokens: PowerLaw = PowerLaw(0.2920, 0.3271)
    model_scale: PowerLaw = PowerLaw(0.1715, 0.5243)
    data_tokens: PowerLaw = PowerLaw(5.8316, 0.4757)


DEEPSEEK = ScalingLaws()


@dataclass
class Optimum:
    """What the laws give for one compute budget."""

    compute: float
    lr_opt: float
    batch_tokens_opt: float
    model_scale_opt: float
    data_tokens_opt: float


def sci(x: float, digits: int = 4) -> str:
    """4.228e10 and 1e17 (not 4.228e+10, 1.000e+17): numbers as the paper writes them, and sweep file names."""
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    if set(mantissa.partition(".")[2]) <= {"0"}:
        mantissa = mantissa.partition(".")[0]
    return f"{mantissa}e{int(exponent)}"


def optimum(compute: float, laws: ScalingLaws = DEEPSEEK) -> Optimum:
    if not compute > 0 or math.isinf(compute):
        raise ValueError(f"compute {compute}: must be a positive number of FLOPs")
    return Optimum(compute, laws.lr(compute), laws.batch_tokens(compute), laws.model_scale(compute), laws.data_tokens(compute))


def model_scales(model: ModelConfig, vocab_size: int | None = None, seq_length: int | None = None) -> dict[str, float]:
    """M beside the parameter-based 6N₁ (non-embedding) and 6N₂ (with the vocabulary), as the
    paper's Table 3; vocabulary: `vocab_size`, else the model's, else 102,400."""
    vocab = vocab_size or model.vocab_size or DEFAULT_VOCAB_SIZE
    d, layers = model.hidden_size, model.num_layers
    m = model.non_embedding_flops_per_token(seq_length)
    six_n1 = 72.0 * layers * d * d
    six_n2 = six_n1 + 6.0 * vocab * d
    return {"M": m, "six_n1": six_n1, "six_n2": six_n2, "six_n1_over_M": six_n1 / m, "six_n2_over_M": six_n2 / m, "vocab_size": vocab}


def rule_depth(d_model: int) -> float:
    """The depth-for-width rule: d_model / aspect ratio, the ratio interpolated between ASPECT_ANCHORS."""
    widths = [math.log(d) for d, _ in ASPECT_ANCHORS]
    ratios = [math.log(d / layers) for d, layers in ASPECT_ANCHORS]
    x = math.log(d_model)
    if x <= widths[0]:
        ratio = ratios[0]
    elif x >= widths[-1]:
        ratio = ratios[-1]
    else:
        i = next(i for i in range(1, len(widths)) if x <= widths[i])
        t = (x - widths[i - 1]) / (widths[i] - widths[i - 1])
        ratio = ratios[i - 1] + t * (ratios[i] - ratios[i - 1])
    return d_model / math.exp(ratio)


def swiglu_ffn(d_model: int, multiple: int = FFN_MULTIPLE) -> int:
    return multiple * math.ceil(8 * d_model / 3 / multiple)


def snap_model(model_scale: float, seq_length: int = DEFAULT_SEQ_LENGTH, vocab_size: int | None = None, tensor_parallel: int = 1, pipeline_parallel: int = 1) -> ModelConfig:
    """The real shape (layers, d_model, heads, ffn) whose M is closest to `model_scale` under the
    depth-for-width rule of the module docstring; heads and ffn divisible by `tensor_parallel`,
    layers by `pipeline_parallel`."""
    if not model_scale > 0:
        raise ValueError(f"model scale {model_scale}: must be > 0")
    if tensor_parallel < 1 or pipeline_parallel < 1:
        raise ValueError("tensor and pipeline parallel sizes must be at least 1")
    if HEAD_DIM * tensor_parallel > MAX_WIDTH:
        raise ValueError(f"tensor parallel {tensor_parallel}: at most {MAX_WIDTH // HEAD_DIM} (one head of {HEAD_DIM} per rank at d_model {MAX_WIDTH})")
    width_step, depth_step = HEAD_DIM * tensor_parallel, pipeline_parallel
    best: tuple[float, int, int] | None = None
    fallback: tuple[float, int, int] | None = None  # the same cost without the depth bound
    for d in range(width_step, MAX_WIDTH + 1, width_step):
        per_layer = 72.0 * d * d + 12.0 * d * seq_length
        ideal = rule_depth(d)
        layers = depth_step * max(1, round(model_scale / per_layer / depth_step))
        depth_off = abs(math.log(layers / ideal))
        cost = abs(math.log(layers * per_layer / model_scale)) + ASPECT_WEIGHT * depth_off
        if fallback is None or cost < fallback[0]:
            fallback = (cost, d, layers)
        if depth_off <= math.log(2) + 1e-9 and (best is None or cost < best[0]):
            best = (cost, d, layers)
    # No width within x2 of the rule's depth (beyond the widest width's; or, with a tensor size, a
    # model too small for a width of 128·T at its rule's depth): the closest in M, depth weighed as above.
    _, d, layers = best or fallback  # type: ignore[misc]
    ffn = swiglu_ffn(d, math.lcm(FFN_MULTIPLE, tensor_parallel))
    return ModelConfig(num_layers=layers, hidden_size=d, num_attention_heads=d // HEAD_DIM, ffn_hidden_size=ffn, seq_length=seq_length, vocab_size=vocab_size)


def global_batch(batch_tokens: float, seq_length: int, micro_batch_size: int = 1, data_parallel: int = 1) -> int:
    """B (tokens) as a global batch of whole sequences, a multiple of micro batch × data-parallel size."""
    if micro_batch_size < 1 or data_parallel < 1:
        raise ValueError("micro batch size and data-parallel size must be at least 1")
    multiple = micro_batch_size * data_parallel
    return multiple * max(1, round(batch_tokens / seq_length / multiple))


@dataclass
class Plan:
    """`crawlmill plan --compute C`: the laws' optimum and a concrete run for it."""

    optimum: Optimum
    model: ModelConfig
    model_scale: float  # M of the snapped shape
    global_batch_size: int  # sequences
    micro_batch_size: int = 1
    data_parallel: int = 1
    scales: dict[str, float] = field(default_factory=dict)

    @property
    def model_scale_deviation(self) -> float:
        return self.model_scale / self.optimum.model_scale_opt - 1

    @property
    def data_tokens(self) -> float:
        """Tokens that spend the budget on the snapped model: C / M."""
        return self.optimum.compute / self.model_scale

    def warnings(self) -> list[str]:
        """Where this plan leaves what the laws stand on: a budget below the paper's smallest
        (1e17 FLOPs, its Figure 2) or above twice its largest run (the 67B on 2T tokens), or a shape
        or batch far from the optimum it was made for."""
        said, best = [], self.optimum
        if best.compute < SMALLEST_FITTED_COMPUTE:
            said.append(f"C {sci(best.compute)} lies below the paper's smallest budget ({sci(SMALLEST_FITTED_COMPUTE)} FLOPs): the laws are extrapolated here")
        if best.compute > 2 * LARGEST_CHECKED_COMPUTE:
            said.append(f"C {sci(best.compute)} lies far above the largest run the paper checked the laws on (its 67B on 2e12 tokens, "
                        f"{sci(LARGEST_CHECKED_COMPUTE)} FLOPs): the laws are extrapolated here")  # fmt: skip
        if not 0.5 <= self.model_scale / best.model_scale_opt <= 2:
            said.append(f"no model shape comes near M_opt {sci(best.model_scale_opt)}: the closest, {self.model.num_layers} x {self.model.hidden_size}, has M {sci(self.model_scale)}")
        batch_tokens = self.global_batch_size * self.model.seq_length
        if self.data_tokens < batch_tokens:
            said.append(f"D = C / M = {sci(self.data_tokens)} tokens is less than one global batch ({sci(batch_tokens)} tokens): no step of this plan can be trained as planned")
        if not 0.5 <= batch_tokens / best.batch_tokens_opt <= 2:
            said.append(f"the global batch ({self.global_batch_size} x {self.model.seq_length} = {sci(batch_tokens)} tokens) is far from B_opt {sci(best.batch_tokens_opt)} tokens: it is a whole number of sequences, a multiple of micro batch x data-parallel size")
        return said

    def to_json(self) -> dict[str, Any]:
        return {
            "warnings": self.warnings(),
            **asdict(self.optimum),
            "model": asdict(self.model),
            "model_scale": self.model_scale,
            "model_scale_deviation": self.model_scale_deviation,
            "data_tokens": self.data_tokens,
            "parameters": self.model.parameters(self.scales.get("vocab_size")),
            "six_n1": self.scales["six_n1"],
            "six_n2": self.scales["six_n2"],
            "global_batch_size": self.global_batch_size,
            "global_batch_tokens": self.global_batch_size * self.model.seq_length,
            "batch_multiple": {"micro_batch_size": self.micro_batch_size, "data_parallel": self.data_parallel},
        }


def plan_compute(
    compute: float,
    seq_length: int = DEFAULT_SEQ_LENGTH,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    micro_batch_size: int = 1,
    data_parallel: int = 1,
    laws: ScalingLaws = DEEPSEEK,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
) -> Plan:
    best = optimum(compute, laws)
    model = snap_model(best.model_scale_opt, seq_length, vocab_size, tensor_parallel, pipeline_parallel)
    scales = model_scales(model, vocab_size)
    batch = global_batch(best.batch_tokens_opt, seq_length, micro_batch_size, data_parallel)
    return Plan(best, model, scales["M"], batch, micro_batch_size, data_parallel, scales)


def plan_model(
    model: ModelConfig,
    tokens: float,
    vocab_size: int | None = None,
    micro_batch_size: int = 1,
    data_parallel: int = 1,
    laws: ScalingLaws = DEEPSEEK,
) -> dict[str, Any]:
    """`crawlmill plan --model NAME --tokens D`: M, 6N₁, 6N₂, C = M·D and Equation 1 for that C."""
    if not tokens > 0:
        raise ValueError(f"tokens {tokens}: must be > 0")
    scales = model_scales(model, vocab_size)
    best = optimum(scales["M"] * tokens, laws)
    return {
        "model": asdict(model),
        **scales,
        "model_scale": scales["M"],  # the key `plan --compute --json` gives M under
        "parameters": model.parameters(scales["vocab_size"]),
        "tokens": tokens,
        **asdict(best),
        "global_batch_size": global_batch(best.batch_tokens_opt, model.seq_length, micro_batch_size, data_parallel),
        "batch_multiple": {"micro_batch_size": micro_batch_size, "data_parallel": data_parallel},
    }
