"""What autograd keeps from one forward pass of a model built here (tests/training/test_memory.py),
and, run by torchrun on two ranks, the same for tensor-parallel, context-parallel and
pipeline-parallel models (each stage's), printed as JSON by rank 0:

    python -m torch.distributed.run --nproc-per-node 2 -m tests.training.memory_probe
"""

from __future__ import annotations

import json
from typing import Any

import torch

from crawlmill.training.config import ParallelConfig
from crawlmill.training.model_config import ModelConfig

VOCAB = 512
# Tensor-parallel cases of the two-rank run: (model settings, micro batch)
SPLIT_CASES: list[tuple[dict[str, Any], int]] = [
    ({"num_layers": 3, "hidden_size": 256, "num_attention_heads": 4, "ffn_hidden_size": 688, "seq_length": 128}, 2),
    ({"num_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_query_groups": 2, "ffn_hidden_size": 688, "seq_length": 64, "attention": "megatron"}, 1),
    ({"num_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "ffn_hidden_size": 688, "seq_length": 128, "recompute": "full"}, 2),
]

# Context-parallel cases (each rank half of every sequence): (model settings, micro batch)
CONTEXT_CASES: list[tuple[dict[str, Any], int]] = [
    ({"num_layers": 3, "hidden_size": 256, "num_attention_heads": 4, "ffn_hidden_size": 688, "seq_length": 128}, 2),
    ({"num_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_query_groups": 2, "ffn_hidden_size": 688, "seq_length": 256}, 1),
    ({"num_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "ffn_hidden_size": 688, "seq_length": 128, "recompute": "selective", "recompute_modules": ["core_attn"]}, 2),
]

# Pipeline-parallel cases (each rank one stage, half of the layers): (model settings, micro batch)
PIPELINE_CASES: list[tuple[dict[str, Any], int]] = [
    ({"num_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "ffn_hidden_size": 688, "seq_length": 128}, 2),
    ({"num_layers": 2, "hidden_size": 256, "num_attention_heads": 4, "num_query_groups": 2, "ffn_hidden_size": 688, "seq_length": 64, "recompute": "full"}, 1),
]


def saved_by_autograd(model_config: ModelConfig, micro_batch: int, parallel: ParallelConfig | None = None) -> tuple[int, int]:
    """(bytes of the distinct storages autograd keeps from one forward pass for the backward, the
    parameters and the input batch left out; this rank's parameter count). With pipeline stages, a
    stage past the first is given the hidden states the stage before it would send."""
    import torch._dynamo

    from crawlmill.training.compat import causal_mask, device_scope
    from crawlmill.training.model import build_model
    from crawlmill.training.trainer import seed_everything

    seed_everything(1)
    model = build_model(model_config, VOCAB, "fp32", parallel)
    context = parallel.context if parallel else 1
    s = model_config.seq_length // context  # a context-parallel rank's share
    mask = causal_mask(s, torch.device("cpu")) if context == 1 else None
    generator = torch.Generator().manual_seed(0)
    tokens, labels = (torch.randint(0, VOCAB, (micro_batch, s), generator=generator) for _ in range(2))
    if parallel is not None and parallel.pipeline > 1 and not model.pre_process:
        model.set_input_tensor(torch.randn(s, micro_batch, model_config.hidden_size, generator=generator, requires_grad=True))
    outside = {t.untyped_storage().data_ptr() for t in (*model.parameters(), tokens, labels)}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in outside:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    # torch.compile off: the fused SwiGLU runs eagerly here (the GPU compiles it; what it keeps is the same)
    with device_scope(), torch._dynamo.config.patch(disable=True), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tokens, torch.arange(s).expand(micro_batch, -1), mask, labels=labels)
    return sum(kept.values()), sum(p.numel() for p in model.parameters())


def main() -> None:
    from megatron.core import parallel_state

    from crawlmill.training.trainer import init_distributed, release_distributed

    rank, world, made = init_distributed()
    parallel_state.initialize_model_parallel(world)
    try:
        for settings, micro_batch in SPLIT_CASES:
            kept, parameters = saved_by_autograd(ModelConfig(**settings), micro_batch, ParallelConfig(tensor=world))
            if rank == 0:
                print(json.dumps({"settings": settings, "micro_batch": micro_batch, "kept": kept, "parameters": parameters}), flush=True)
        parallel_state.destroy_model_parallel()
        parallel_state.initialize_model_parallel(1, 1, context_parallel_size=world)
        for settings, micro_batch in CONTEXT_CASES:
            kept, _ = saved_by_autograd(ModelConfig(**settings), micro_batch, ParallelConfig(context=world))
            most = torch.tensor([kept], dtype=torch.float64)
            torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)  # the ranks keep different chunks' masks
            if rank == 0:
                print(json.dumps({"settings": settings, "micro_batch": micro_batch, "kept": int(most.item()), "context": world}), flush=True)
        parallel_state.destroy_model_parallel()
        parallel_state.initialize_model_parallel(1, world)
        for settings, micro_batch in PIPELINE_CASES:
            kept, parameters = saved_by_autograd(ModelConfig(**settings), micro_batch, ParallelConfig(pipeline=world))
            stages: list = [None] * world
            torch.distributed.all_gather_object(stages, (kept, parameters))
            if rank == 0:
                print(json.dumps({"settings": settings, "micro_batch": micro_batch, "stages": stages}), flush=True)
    finally:
        parallel_state.destroy_model_parallel()
        release_distributed(made)


if __name__ == "__main__":
    main()
