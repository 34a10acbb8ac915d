"""Build the Megatron-Core GPTModel of a ModelConfig: DeepSeek LLM's design (Section 2.2).

Pre-norm RMSNorm, SwiGLU MLP (gated linear unit with SiLU), rotary position embeddings, no biases,
untied input and output embeddings, weights drawn from N(0, 0.006²), no dropout; grouped-query
attention where the config has fewer key/value heads (the 67B). The local layer spec on CPU, the
Transformer Engine spec where TE and CUDA are there (compat.py); the local spec's core attention is
torch's fused scaled_dot_product_attention (attention.py) unless `model.attention: megatron`; Megatron's
fused SwiGLU and cross-entropy on GPU (`model.fused_kernels`); activation recomputation as configured
(`model.recompute`: none, selective, full).

    model = build_model(ModelConfig(...), vocab_size=102_400, precision="bf16")
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from .compat import block_spec, device_scope, has_transformer_engine, layer_spec, use_cuda
from .config import ParallelConfig
from .model_config import ModelConfig, sequence_parallel


def transformer_config(model: ModelConfig, precision: str, parallel: ParallelConfig | None = None, initialize: bool = True, on_cpu: bool = False) -> Any:
    """Megatron's TransformerConfig for `model`; `initialize=False` leaves the weights uninitialized,
    for a model whose every weight is loaded next (no time, and no fp32 master copy of each matrix
    that CPU initialization makes); `on_cpu`: weights made where torch's default device says, even
    with CUDA (the meta device of build_model(meta=True))."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    parallel = parallel or ParallelConfig()
    bf16 = precision == "bf16"
    fused = model.fused(use_cuda())
    seq_parallel = sequence_parallel(parallel.tensor, use_cuda(), has_transformer_engine())
    if seq_parallel and (model.seq_length // parallel.context) % parallel.tensor:
        raise ValueError(
            f"seq_length {model.seq_length} / context {parallel.context} is not a multiple of tensor {parallel.tensor}: "
            "sequence parallelism (on with Transformer Engine) splits each rank's sequence over the tensor ranks"
        )
    return TransformerConfig(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.query_groups,
        ffn_hidden_size=model.ffn_hidden_size,
        normalization="RMSNorm",
        layernorm_epsilon=model.norm_epsilon,
        gated_linear_unit=True,  # SwiGLU: silu(x W1) * (x W3), then W2
        activation_func=F.silu,
        add_bias_linear=False,
        init_method_std=model.init_std,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bias_activation_fusion=fused,  # SwiGLU in one kernel, saving its input alone for backward
        cross_entropy_loss_fusion=fused and bf16,  # its logits' gradient is bf16 by construction
        bf16=bf16,
        params_dtype=torch.bfloat16 if bf16 else torch.float32,
        tensor_model_parallel_size=parallel.tensor,
        pipeline_model_parallel_size=parallel.pipeline,
        pipeline_dtype=torch.bfloat16 if bf16 else torch.float32,  # what the stages send each other
        context_parallel_size=parallel.context,
        sequence_parallel=seq_parallel,
        use_cpu_initialization=on_cpu or not use_cuda(),
        perform_initialization=initialize,
        **_recompute(model),
    )


def _recompute(model: ModelConfig) -> dict[str, Any]:
    """TransformerConfig's activation-recomputation settings for `model.recompute`."""
    if model.recompute == "full":
        return {"recompute_granularity": "full", "recompute_method": "uniform", "recompute_num_layers": model.recompute_layers}
    if model.recompute == "selective":
        return {"recompute_granularity": "selective", "recompute_modules": list(model.recompute_modules)}
    return {}


def build_model(
    model: ModelConfig, vocab_size: int, precision: str = "fp32", parallel: ParallelConfig | None = None, initialize: bool = True, meta: bool = False,
) -> Any:  # fmt: skip
    """The GPTModel for this rank (Megatron's model-parallel state must be initialized);
    `initialize=False`: weights left as allocated, for a model about to be loaded; `meta`: on the
    meta device (shapes, no storage; the local spec), for its sharded state dict (lazy_save.py)."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt.gpt_model import GPTModel

    spec, name = layer_spec(model.attention, local=meta)
    if parallel is not None and parallel.context > 1 and name == "local":
        raise ValueError("context parallelism needs Transformer Engine's attention or attention: sdpa; Megatron's DotProductAttention has none")
    config = transformer_config(model, precision, parallel, initialize and not meta, on_cpu=meta)
    with device_scope(), torch.device("meta") if meta else contextlib.nullcontext():
        gpt = GPTModel(
            config,
            block_spec(spec, name, config),
            vocab_size=vocab_size,
            max_sequence_length=model.seq_length,
            pre_process=parallel_state.is_pipeline_first_stage(),
            post_process=parallel_state.is_pipeline_last_stage(),
            share_embeddings_and_output_weights=False,
            position_embedding_type="rope",
            rotary_base=model.rotary_base,
        )
    if use_cuda() and not meta:
        gpt = gpt.cuda(torch.cuda.current_device())
    return gpt
