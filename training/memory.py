"""How much memory one rank of a training run needs, estimated before it starts: will this model,
micro batch and parallel layout fit the GPU? (Megatron-LM's `report_theoretical_memory` is the peer;
this estimate follows the model crawlmill builds, tensor by tensor.) Shown in the run's first line
and run.json, by `crawlmill plan --model/--compute` and for each run of `crawlmill plan sweep`; the
run logs what it used (`memory_gib` in its train records, `peak_memory`).

    from crawlmill.training.memory import estimate_memory
    estimate_memory(config, vocab=102_400, data_parallel=8, cuda=True).describe()

Three parts, for the most loaded rank:
- states: its parameters (the layers' matrices split over tensor ranks, their norms copied, the
  embedding and the output layer split over the vocabulary; with pipeline stages the first's
  embedding or the last's output layer and final norm) times the bytes each
  costs: on GPU, the distributed optimizer's bf16 weight 2 + fp32 gradient 4 + fp32 master weight
  and two Adam moments 12 shared by the data-parallel (x context) ranks; fp32 on GPU 4 + 4 + 8
  shared; on CPU torch's AdamW: 4 + 4 + 8, unshared.
- activations: what autograd keeps from the forward passes for the backward, per micro-batch: per
  layer the inputs and outputs of its norms, projections, attention (query, key, value, output and
  the flash kernel's log-sum-exp; the unfused "megatron" attention keeps its s x s probabilities
  instead) and SwiGLU (five ffn-wide tensors unfused, three with Megatron's fused kernel), then the
  final norm and the fp32 logits the cross entropy keeps. Recomputation keeps less: "full" only
  each chunk of layers' input (plus one chunk recomputed whole during the backward), "selective"
  drops the recomputed modules' insides. With pipeline parallelism the more loaded of the first
  stage, which holds the most micro-batches in flight (1F1B), and the last, which holds one but also
  the output layer and the logits (the larger when a rank has few micro-batches a step). Sequence
  parallelism (with tensor parallelism under Transformer Engine) splits the norms' share too. With context parallelism a rank keeps its
  share of the sequence, plus the whole sequence's keys and values that its attention gathers.
- output gradient: in bf16, the bf16 logits and then their gradient, briefly beside the fp32 copy the
  loss keeps (whose own gradient is computed in place); none in fp32.

Not counted: the CUDA context and kernels' workspace (about 1 GiB), allocator fragmentation,
communication buffers, the optimizer step's temporaries (after the backward pass has freed the
activations, so not at the peak). The activations are the local spec's, as measured on CPU; on a
GPU torch's fused RMSNorm may keep less (its input and 1/rms, not the normalized input).
tests/training/test_memory.py checks the activations against what autograd keeps (saved-tensor
hooks, one and two tensor-parallel ranks) and the states against the parameters and the CPU
optimizer's tensors, byte for byte.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, replace
from typing import Any

from .config import TrainConfig
from .model_config import ModelConfig, sequence_parallel

GIB = 2**30


@dataclass
class MemoryEstimate:
    parameters: int  # on the most loaded rank
    bytes_per_parameter: float  # weight, gradient and optimizer states
    states: float  # bytes
    activations: float  # bytes kept for the backward pass, micro-batches in flight included
    output_gradient: float  # bytes, transient
    micro_batches_in_flight: int
    pipeline_stage: str = "all"  # which stage's rank this is: "all" without pipeline parallelism, else the more loaded of "first" and "last"

    @property
    def total(self) -> float:
        return self.states + self.activations + self.output_gradient

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "total_gib": round(self.total / GIB, 3)}

    def describe(self) -> str:
        return (
            f"{_size(self.total)}: weights, gradients and optimizer states {_size(self.states)} ({human_count(self.parameters)} parameters x "
            f"{self.bytes_per_parameter:.3g} bytes), activations {_size(self.activations)} ({self.micro_batches_in_flight} micro-batch(es) "
            f"in flight)" + (f", bf16 logits and their gradient {_size(self.output_gradient)}" if self.output_gradient else "")
            + (f" on the {self.pipeline_stage} pipeline stage" if self.pipeline_stage != "all" else "")
        )


def too_large(estimate: MemoryEstimate, capacity: float) -> str | None:
    """A warning when the estimate does not fit a device of `capacity` bytes (less 1 GiB for the
    CUDA context and workspace), with what would make it fit; None when it fits."""
    room = capacity - GIB
    if estimate.total <= room:
        return None
    return (f"memory per rank estimated at {_size(estimate.total)}, more than this GPU's {_size(capacity)} less 1 GiB for CUDA: "
            "expect an out-of-memory error; a smaller micro_batch_size, model.recompute: full or selective, or more data-parallel "
            "ranks (they share the optimizer's states) would lower it (crawlmill plan --model CONFIG --tokens D shows the estimate)")  # fmt: skip


def _size(size: float) -> str:
    return f"{size / GIB:,.1f} GiB" if size >= GIB else f"{size / 2**20:,.1f} MiB"


def human_count(number: float) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M")):
        if number >= size:
            return f"{number / size:.3g}{unit}" if number < 999.5 * size else f"{number / size:,.0f}{unit}"  # 1,190B, not 1.19e+03B
    return f"{number:,.0f}"


def peak_memory(device: Any) -> dict[str, float]:
    """Collective: the most GiB any rank has used so far, as train records log it. `memory_gib`: on a
    GPU the CUDA caching allocator's peak of allocated memory (what the estimate counts: tensors), on
    CPU the process's peak resident size (everything, Python and libraries included);
    `memory_reserved_gib` (GPU): the allocator's peak reserve, fragmentation included (Megatron-LM
    logs both)."""
    import resource

    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        used = [float(torch.cuda.max_memory_allocated(device)), float(torch.cuda.max_memory_reserved(device))]
    else:
        used = [float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024]  # KiB on Linux
    if dist.is_initialized() and dist.get_world_size() > 1:
        tensor = torch.tensor(used, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        used = tensor.tolist()
    return dict(zip(("memory_gib", "memory_reserved_gib"), (round(value / GIB, 3) for value in used)))


def rank_parameters(model: ModelConfig, vocab: int, tensor: int = 1, pipeline: int = 1) -> int:
    """Parameters held by the most loaded rank: a pipeline stage's layers (matrices split over the
    tensor ranks, norm weights whole), the embedding (first stage) and output layer and final norm
    (last stage), the vocabulary split over the tensor ranks."""
    d = model.hidden_size
    layers = -(-model.num_layers // pipeline) * (model.layer_matrix_parameters() // tensor + 2 * d)
    vocab_rows = -(-vocab // tensor) * d
    if pipeline == 1:
        return layers + 2 * vocab_rows + d
    return layers + vocab_rows + d  # the last stage: output layer and final norm (the first: embedding only)


def bytes_per_parameter(precision: str, cuda: bool, sharded_over: int) -> float:
    """Weight + gradient + optimizer states per parameter (module docstring)."""
    if not cuda:
        return 16.0
    if precision == "bf16":
        return 2 + 4 + 12 / sharded_over
    return 4 + 4 + 8 / sharded_over


def layer_activations(model: ModelConfig, micro_batch: int, element: int, tensor: int = 1, split_norms: bool = False, fused: bool = False,
                      context: int = 1, mask: bool = False) -> float:  # fmt: skip
    """Bytes one transformer layer keeps for its backward pass, for one micro-batch (none recomputed);
    `model.seq_length` is a context-parallel rank's share of the sequence."""
    return sum(_layer_parts(model, micro_batch, element, tensor, split_norms, fused, context, mask).values())


def _layer_parts(model: ModelConfig, micro_batch: int, element: int, tensor: int, split_norms: bool, fused: bool, context: int = 1, mask: bool = False) -> dict[str, float]:
    s, b, h, f = model.seq_length, micro_batch, model.hidden_size, model.ffn_hidden_size
    ratio = model.query_groups / model.num_attention_heads
    split = tensor if split_norms else 1  # the norms' share: whole on every tensor rank without sequence parallelism
    sbh = s * b * h * element
    norms = 2 * (2 * sbh + s * b * element) / split  # each norm: its input, the normalized input, 1/rms
    linear_inputs = 2 * sbh / split  # the qkv and fc1 projections' inputs (their outputs are kept below)
    rope = 4 * s * model.head_dim * element  # cos and sin for the query and the key
    # the rotated query and key, the fused qkv projection (value a view of it), the attention's output
    attention = sbh * (1 + ratio + (1 + 2 * ratio) + 1) / tensor
    if model.attention == "megatron":  # unfused: its s x s probabilities; with fewer key/value heads, key and value repeated to every head
        value = 1 + 2 * ratio if ratio == 1 else 1  # a view of the qkv projection, or the repeated copy
        attention = sbh * (1 + 1 + value + 1) / tensor + b * model.num_attention_heads * s * s * element / tensor
        softmax = 0.0
    else:
        softmax = 4.0 * b * model.num_attention_heads * s / tensor  # the flash kernel's log-sum-exp, fp32
    mlp = (3 if fused else 5) * s * b * f * element / tensor  # fc1's output (two ffn-wide halves) and what SwiGLU keeps
    gathered = 0.0
    if context > 1:  # context_parallel.py: the whole sequence's keys and values instead of the rotated key and the qkv output, and
        gathered = (2 * context - 3) * ratio * sbh / tensor  # the two query chunks' outputs kept beside the joined one
        if mask:  # on CPU torch makes each lower-right causal mask but the square one a float tensor: ranks past 0 hold two
            gathered += (s // 2) ** 2 * (2 * context + 1) * element
    return {"norms": norms, "linear_inputs": linear_inputs, "rope": rope, "attention": attention, "softmax": softmax, "mlp": mlp, "gathered": gathered}


def kept_activations(model: ModelConfig, vocab: int, micro_batch: int, element: int, tensor: int = 1, pipeline: int = 1,
                     split_norms: bool = False, fused: bool = False, mask: bool = False, context: int = 1, output: bool = True) -> float:  # fmt: skip
    """Bytes a pipeline stage keeps through one micro-batch's forward pass (module docstring):
    `output`: the stage ends with the final norm, output layer and loss (the last, or the only one).
    `mask`: the CPU path, where the model is given an s x s attention mask (on GPU the kernels are
    causal), or with `context` parallelism makes its chunks' masks; `model.seq_length`: a context
    rank's share of the sequence."""
    parts = _layer_parts(model, micro_batch, element, tensor, split_norms, fused, context, mask)
    s, b, h = model.seq_length, micro_batch, model.hidden_size
    split = tensor if split_norms else 1
    layers = -(-model.num_layers // pipeline)
    mask_bytes = s * s if mask and context == 1 else 0  # bool, one tensor that every layer shares
    if model.recompute == "full":  # each chunk of layers keeps its inputs (hidden states, mask, the rotary table), nothing inside
        chunks = -(-layers // model.recompute_layers)
        per_layer = chunks * s * b * h * element / split / layers
        shared = mask_bytes + 4 * s * model.head_dim  # the rotary table is fp32
    else:
        dropped = set(model.recompute_modules) if model.recompute == "selective" else set()
        if "core_attn" in dropped:
            parts["softmax"] = parts["gathered"] = 0.0  # recomputed from the query, key and value it keeps
            if model.attention == "megatron":
                parts["attention"] -= b * model.num_attention_heads * s * s * element / tensor
        if "mlp" in dropped:
            parts["mlp"] = 0.0  # recomputed from its input (the norm's output, kept anyway)
        per_layer = sum(parts.values())
        shared = mask_bytes if model.attention == "megatron" else 0
    total = layers * per_layer + shared
    if output:  # the output side: the final norm, the output layer's input, the fp32 logits
        total += (2 * s * b * h * element + s * b * element) / split + s * b * h * element / split + 4.0 * s * b * -(-vocab // tensor)
    return total


def estimate_memory(config: TrainConfig, vocab: int, data_parallel: int = 1, cuda: bool = True, global_batch: int | None = None) -> MemoryEstimate:
    """The memory of the most loaded rank of `config` trained on `data_parallel` data-parallel ranks,
    on GPU (`cuda`) or on CPU (fp32, torch AdamW). `global_batch` (sequences a step; default the
    config's) sets how many micro-batches a rank has, so how many the pipeline can hold in flight;
    unknown, as many as it has stages."""
    model, p = config.model, config.parallel
    precision = config.precision if cuda else "fp32"
    element = 2 if precision == "bf16" else 4
    seq = -(-model.seq_length // p.context)
    model = replace(model, seq_length=seq)
    split_norms = sequence_parallel(p.tensor, cuda, importlib.util.find_spec("transformer_engine") is not None)
    fused = model.fused(cuda)
    batch = global_batch or config.global_batch_size
    in_flight = min(p.pipeline, max(1, batch // (config.micro_batch_size * data_parallel))) if batch else p.pipeline
    per_parameter = bytes_per_parameter(precision, cuda, data_parallel * p.context)
    recomputed = 0.0
    if model.recompute == "full":  # the backward recomputes one chunk of layers at a time, whole
        recomputed = model.recompute_layers * layer_activations(model, config.micro_batch_size, element, p.tensor, split_norms, fused, p.context, not cuda)

    def stage(output: bool, micro_batches: int, parameters: int) -> MemoryEstimate:
        one = kept_activations(model, vocab, config.micro_batch_size, element, p.tensor, p.pipeline, split_norms, fused, not cuda, p.context, output)
        # The loss keeps fp32 logits (counted in `one`) and computes their gradient in place; bf16 logits,
        # and then their bf16 gradient, live beside them for a while (Megatron's vocab-parallel cross entropy).
        output_gradient = 2.0 * seq * config.micro_batch_size * -(-vocab // p.tensor) if output and element == 2 else 0.0
        return MemoryEstimate(parameters, per_parameter, parameters * per_parameter, one * micro_batches + recomputed, output_gradient, micro_batches)

    last = rank_parameters(config.model, vocab, p.tensor, p.pipeline)
    if p.pipeline == 1:
        return stage(True, in_flight, last)
    # 1F1B: the first stage holds the most micro-batches in flight, the last one (with the output
    # layer and the loss's logits) one; the more loaded of the two is the run's need
    first = replace(stage(False, in_flight, last - config.model.hidden_size), pipeline_stage="first")  # the embedding, no final norm
    return max(first, replace(stage(True, 1, last), pipeline_stage="last"), key=lambda estimate: estimate.total)
