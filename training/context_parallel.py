"""Context parallelism: each of `cp` ranks holds a share of every sequence, for the local layer spec.

Megatron-Core's context parallelism lives in Transformer Engine's attention; its own
DotProductAttention refuses it, so without TE (CPU, or a GPU machine without it) there was none.
This module gives the local spec's SdpaAttention (attention.py) the same layout and arithmetic:

- Layout, Megatron's (get_batch_on_this_cp_rank, get_pos_emb_on_this_cp_rank): every sequence is
  cut into 2·cp equal chunks and rank r keeps chunks r and 2·cp-1-r, so that under a causal mask
  each rank does the same work (an early chunk with few keys, a late one with many). Megatron's
  RoPE slices its position embeddings this way on its own; `split_sequence` cuts the batch (tokens,
  labels, loss mask, positions) to match, and stands in for Megatron's slicer on CPU (which pins
  memory and moves its index to CUDA).
- Attention, all-gather of keys and values (what TE calls cp_comm_type "all_gather", and Llama 3's
  choice): each rank gathers the whole sequence's keys and values from its group, puts the chunks
  back in order, and computes its two query chunks' causal attention against the keys up to them
  (a lower-right causal mask, which torch's fused attention takes). The backward pass sums the
  keys' and values' gradients over the group and gives each rank its chunks' share
  (reduce-scatter). Keys and values are the small half of attention's inputs under grouped-query
  attention; the gathered copy lives for one layer's forward and backward.

Losses and gradients: a rank's loss covers its tokens only; the trainer sums losses, loss tokens
and gradients over data-parallel x context-parallel ranks (Megatron's DDP does the same with
`with_context_parallel=True`), so a step equals the step of one rank holding whole sequences.

    local = split_sequence(batch["tokens"], 1, cp_rank, cp_size)
    out = context_parallel_attention(q, k, v, scale, group)   # q, k, v: [s/cp, b, heads, dim]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right


def rank_chunks(cp_rank: int, cp_size: int) -> list[int]:
    """The sequence chunks (of 2·cp) that context-parallel rank `cp_rank` holds, in its order."""
    return [cp_rank, 2 * cp_size - 1 - cp_rank]


def split_sequence(tensor: torch.Tensor, dim: int, cp_rank: int, cp_size: int) -> torch.Tensor:
    """This rank's share of `tensor` along its sequence dimension `dim` (module docstring)."""
    if cp_size == 1:
        return tensor
    length = tensor.size(dim)
    if length % (2 * cp_size):
        raise ValueError(f"sequence length {length} is not a multiple of 2 x context parallel size ({2 * cp_size})")
    chunks = tensor.view(*tensor.shape[:dim], 2 * cp_size, length // (2 * cp_size), *tensor.shape[dim + 1 :])
    index = torch.tensor(rank_chunks(cp_rank, cp_size), device=tensor.device)
    return chunks.index_select(dim, index).reshape(*tensor.shape[:dim], -1, *tensor.shape[dim + 1 :])


def _held(cp_size: int) -> list[int]:
    """The chunk at each place of the gathered tensor (rank 0's two chunks, then rank 1's...)."""
    return [chunk for rank in range(cp_size) for chunk in rank_chunks(rank, cp_size)]


def _reorder(chunks: torch.Tensor, order: list[int]) -> torch.Tensor:
    """chunks[order] along dim 0, by Python indices: an index tensor made on the GPU in every layer
    would make the host wait for the device each time."""
    return torch.cat([chunks[i] for i in order])


class _GatherSequence(torch.autograd.Function):
    """[s/cp, ...] per rank -> [s, ...] in sequence order; backward: reduce-scatter of the gradient."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, group: Any) -> torch.Tensor:
        cp_size = dist.get_world_size(group)
        ctx.group, ctx.cp_size = group, cp_size
        local = local.contiguous()
        gathered = torch.empty((cp_size * local.size(0), *local.shape[1:]), dtype=local.dtype, device=local.device)
        dist.all_gather_into_tensor(gathered, local, group=group)
        held = _held(cp_size)
        in_order = sorted(range(2 * cp_size), key=held.__getitem__)  # where each chunk of the sequence lies
        return _reorder(gathered.view(2 * cp_size, -1, *local.shape[1:]), in_order).reshape(gathered.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        cp_size = ctx.cp_size
        chunks = grad.contiguous().view(2 * cp_size, -1, *grad.shape[1:])
        by_rank = _reorder(chunks, _held(cp_size)).reshape(grad.shape)  # rank 0's two chunks, then rank 1's...
        local = torch.empty((grad.size(0) // cp_size, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
        dist.reduce_scatter_tensor(local, by_rank, group=ctx.group)
        return local, None


def gather_sequence(local: torch.Tensor, group: Any) -> torch.Tensor:
    """Every rank's share of a sequence-first tensor, joined in sequence order (differentiable)."""
    return _GatherSequence.apply(local, group)


def context_parallel_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None, group: Any) -> torch.Tensor:
    """Causal attention of this rank's queries over the whole sequence's keys and values.

    query, key, value: [s/cp, batch, heads, head_dim], this rank's two chunks (split_sequence);
    returns the context [s/cp, batch, heads, head_dim] in the same order."""
    cp_size, cp_rank = dist.get_world_size(group), dist.get_rank(group)
    chunk = query.size(0) // 2
    # [s, b, h, d] -> [b, h, s, d]
    keys, values = (gather_sequence(t, group).permute(1, 2, 0, 3) for t in (key, value))
    grouped = query.size(2) != key.size(2)
    if grouped and query.is_cuda and query.dtype == torch.float32:
        # flash attention, which takes grouped keys and a lower-right mask as they are, refuses fp32; the
        # memory-efficient kernel that would come next wants as many key heads as query heads
        keys, values = (t.repeat_interleave(query.size(2) // key.size(2), dim=1) for t in (keys, values))
        grouped = False
    outputs = []
    for position, index in enumerate(rank_chunks(cp_rank, cp_size)):
        q = query[position * chunk : (position + 1) * chunk].permute(1, 2, 0, 3)
        seen = (index + 1) * chunk  # keys up to the end of this chunk
        mask = causal_lower_right(chunk, seen)
        out = F.scaled_dot_product_attention(q, keys[:, :, :seen], values[:, :, :seen], attn_mask=mask, scale=scale, enable_gqa=grouped)
        outputs.append(out.permute(2, 0, 1, 3))
    return torch.cat(outputs, dim=0)
