"""Core attention through torch's fused `scaled_dot_product_attention`, for the local layer spec.

Megatron-Core's local spec (the one without Transformer Engine: CPU, and a GPU machine without TE)
computes attention unfused, as its DotProductAttention does: the [batch, heads, s, s] score matrix
is written, softmaxed and read back, and grouped-query keys and values are copied once per query
head. At DeepSeek's 4,096 tokens that matrix is 64 MiB per head and batch row in fp32, and it is
also kept for the backward pass. torch's SDPA computes the same attention in tiles (flash attention
on CPU and GPU, no score matrix kept) and reads grouped keys and values in place (`enable_gqa`).

`SdpaAttention` is Megatron's DotProductAttention with only `forward` replaced, so construction,
head bookkeeping and checkpoints are Megatron's own in every version. It computes softmax(q·kᵀ ·
scale + causal mask) · v as DotProductAttention does, for what DeepSeek LLM uses (causal mask, no
dropout, no sliding window, the plain softmax); anything else is handed to Megatron's forward.
The mask given must be the plain causal one (checked once per mask tensor: the trainer builds one);
any other, e.g. attention reset at document boundaries, is applied by Megatron's forward as given.
bench/attention_bench.py measures it against DotProductAttention.

With context parallelism (context_parallel.py) each rank holds a share of every sequence: the
forward gathers the keys and values of the whole sequence; Megatron's own DotProductAttention
refuses context parallelism, so its forward is no fallback then and anything but the plain causal
attention is an error.

    spec = with_sdpa_attention(get_gpt_layer_local_spec(...))
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType

from .context_parallel import context_parallel_attention


class SdpaAttention(DotProductAttention):
    """DotProductAttention whose forward is torch's scaled_dot_product_attention (module docstring)."""

    _causal_mask: torch.Tensor | None = None  # the last mask found to be the plain causal one

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        # DotProductAttention asserts context parallel size 1 (TE's attention alone had it): it is
        # built as for one rank, then keeps the real config and its context-parallel group
        parallel = config.context_parallel_size > 1
        super().__init__(dataclasses.replace(config, context_parallel_size=1) if parallel else config, *args, **kwargs)
        self.config = config
        self.cp_group = None
        if parallel:
            from megatron.core import parallel_state

            self.cp_group = getattr(self.pg_collection, "cp", None) or parallel_state.get_context_parallel_group()

    def _plain_causal(self, mask: torch.Tensor | None, sq: int, sk: int) -> bool:
        """Whether `mask` (True: masked) hides exactly the future positions, for every batch row."""
        if mask is None or mask is self._causal_mask:
            return True
        if mask.dim() != 4 or tuple(mask.shape[-2:]) != (sq, sk) or mask.size(1) != 1:
            return False
        future = torch.ones(sq, sk, dtype=torch.bool, device=mask.device).triu(1)
        if not bool((mask.to(torch.bool) == future).all()):
            return False
        self._causal_mask = mask
        return True

    def _sdpa_applies(self, attention_bias: Any, packed_seq_params: Any, mask_type: AttnMaskType) -> bool:
        config = self.config
        return (
            attention_bias is None
            and packed_seq_params is None
            and mask_type == AttnMaskType.causal
            and getattr(config, "softmax_type", "vanilla") == "vanilla"
            and getattr(config, "window_size", None) is None
            and not config.apply_query_key_layer_scaling
            and (self.attention_dropout.p == 0.0 or not self.training)
        )

    def forward(  # type: ignore[override]
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        attn_mask_type: AttnMaskType | None = None,
        attention_bias: torch.Tensor | None = None,
        packed_seq_params: Any = None,
    ) -> torch.Tensor:
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        if self.cp_group is not None:
            if not (attention_mask is None and self._sdpa_applies(attention_bias, packed_seq_params, mask_type)):
                raise ValueError("context parallelism without Transformer Engine takes the plain causal attention alone (no mask, bias, packed sequences or dropout)")
            context = context_parallel_attention(query, key, value, self.softmax_scale, self.cp_group)
            return context.reshape(query.size(0), query.size(1), self.hidden_size_per_partition)
        plain = self._plain_causal(attention_mask, query.size(0), key.size(0))
        if not (plain and self._sdpa_applies(attention_bias, packed_seq_params, mask_type)):
            return super().forward(query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params)
        # [s, b, heads, head_dim] -> [b, heads, s, head_dim]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        grouped = q.size(1) != k.size(1)
        context = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.softmax_scale, enable_gqa=grouped)
        # [b, heads, s, head_dim] -> [s, b, heads * head_dim]
        sq, b = query.size(0), query.size(1)
        return context.permute(2, 0, 1, 3).reshape(sq, b, self.hidden_size_per_partition)


def with_sdpa_attention(spec: Any) -> Any:
    """A copy of a GPT layer spec whose self-attention's core attention is SdpaAttention."""
    spec = copy.deepcopy(spec)
    submodules = spec.submodules.self_attention.submodules
    if submodules.core_attention is not DotProductAttention:
        raise TypeError(f"the layer spec's core attention is {submodules.core_attention}, not Megatron's DotProductAttention")
    submodules.core_attention = SdpaAttention
    return spec
