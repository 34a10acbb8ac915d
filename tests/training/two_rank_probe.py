"""What the two-rank probes of the GPU backend share (megatron_context_probe.py,
megatron_pipeline_probe.py, megatron_reshard_probe.py; imported after cuda_on_cpu): the small model
they train, the global batches they step on, the CPU backend's run on one rank that they are
compared with, and the one JSON line rank 0 prints for the test."""

import json
from typing import Any

import torch
import torch.distributed as dist

# two layers (one a stage with pipeline parallelism 2), grouped-query attention
SHAPE = {"num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_query_groups": 2, "ffn_hidden_size": 128, "seq_length": 32, "init_std": 0.05}
VOCAB, SEQ, LR = 256, 32, 1e-2


def global_batches(steps: int = 3) -> list[list[dict[str, torch.Tensor]]]:
    """`steps` global batches of two micro-batches of two sequences each, random loss masks (seeded)."""
    generator = torch.Generator().manual_seed(5)

    def batch() -> dict[str, torch.Tensor]:
        tokens = torch.randint(0, VOCAB, (2, SEQ + 1), generator=generator)
        return {"tokens": tokens[:, :-1].contiguous(), "labels": tokens[:, 1:].contiguous(), "loss_mask": (torch.rand(2, SEQ, generator=generator) > 0.2).float(),
                "position_ids": torch.arange(SEQ).expand(2, SEQ).contiguous()}  # fmt: skip

    return [[batch(), batch()] for _ in range(steps)]


def one_rank_reference(rank: int, steps: list, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The CPU backend on this rank alone (the whole model, whole sequences, seed 0), stepped on
    `steps`: its (loss, grad norm) a step, its validation sums of the first batch, and the largest
    difference of its weights from `weights` (by the whole model's names)."""
    from megatron.core import parallel_state

    from crawlmill.training.backends import TorchBackend
    from crawlmill.training.compat import device_scope
    from crawlmill.training.config import OptimizerConfig
    from crawlmill.training.model import build_model
    from crawlmill.training.model_config import ModelConfig
    from crawlmill.training.trainer import seed_everything

    parallel_state.initialize_model_parallel(1, 1)
    alone = [dist.new_group([r]) for r in range(2)][rank]
    seed_everything(0)
    cpu = TorchBackend(build_model(ModelConfig(**SHAPE), VOCAB), OptimizerConfig(weight_decay=0.1), LR, torch.device("cpu"), alone, alone)
    with device_scope():
        figures = [list(cpu.step(b, LR)) for b in steps]
        evaluated = list(cpu.evaluate(steps[0]))
    theirs = dict(cpu.model.named_parameters())
    parallel_state.destroy_model_parallel()
    return {"torch": figures, "torch_evaluate": evaluated, "weights_max_difference": max(float((w - theirs[name]).abs().max()) for name, w in weights.items())}


def report(rank: int, mine: dict[str, Any]) -> None:
    """Every rank's `mine`, as one JSON list printed by rank 0 (two ranks' prints could interleave)."""
    every: list = [None, None]
    dist.all_gather_object(every, {"rank": rank, **mine})
    if rank == 0:
        print(json.dumps(every))
