"""Probe (two torchrun ranks, tests/training/test_backends.py): the GPU backend (Megatron's DDP,
distributed optimizer and pipeline schedule, training/backends.py MegatronBackend) with pipeline
parallelism 2, one decoder layer a stage, on CPU through tests/training/cuda_on_cpu.py, against the
CPU backend of one rank holding the whole model. Prints a JSON list, one entry per rank.

    torchrun --nproc-per-node 2 tests/training/megatron_pipeline_probe.py
"""

import json
import warnings

import cuda_on_cpu  # noqa: F401 - first: the CUDA-only code paths on CPU
import torch
import torch.distributed as dist

warnings.filterwarnings("ignore")


def _global(name: str, stage: int) -> str:
    """A stage's parameter name as the whole model calls it: its one decoder layer is layer `stage`."""
    return name.replace("decoder.layers.0.", f"decoder.layers.{stage}.")


def main() -> None:
    from megatron.core import parallel_state

    from crawlmill.training.backends import MegatronBackend, TorchBackend
    from crawlmill.training.compat import device_scope
    from crawlmill.training.config import OptimizerConfig, ParallelConfig
    from crawlmill.training.model import build_model
    from crawlmill.training.model_config import ModelConfig
    from crawlmill.training.trainer import init_distributed, seed_everything

    rank, _, _ = init_distributed()
    shape = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128, seq_length=32, init_std=0.05)
    optim = OptimizerConfig(weight_decay=0.1)
    generator = torch.Generator().manual_seed(5)

    def batch() -> dict:
        tokens = torch.randint(0, 256, (2, 33), generator=generator)
        return {"tokens": tokens[:, :-1].contiguous(), "labels": tokens[:, 1:].contiguous(), "loss_mask": (torch.rand(2, 32, generator=generator) > 0.2).float(),
                "position_ids": torch.arange(32).expand(2, 32).contiguous()}  # fmt: skip

    steps = [[batch(), batch()] for _ in range(3)]
    parallel_state.initialize_model_parallel(1, 1)
    seed_everything(0)
    start = {name: p.detach().clone() for name, p in build_model(shape, 256).named_parameters()}  # the whole model's initial weights
    parallel_state.destroy_model_parallel()

    parallel_state.initialize_model_parallel(1, 2)
    stage = parallel_state.get_pipeline_model_parallel_rank()
    with device_scope():
        model = build_model(shape, 256, "fp32", ParallelConfig(pipeline=2))
        with torch.no_grad():  # a stage initializes its layers from its own generator: given the whole model's instead
            for name, p in model.named_parameters():
                p.copy_(start[_global(name, stage)])
        megatron = MegatronBackend(model, optim, 1e-2, "fp32", 32, 2)
    figures = [list(megatron.step(b, 1e-2)) for b in steps]  # outside device_scope: batches go to "cuda" (the shim's CPU)
    evaluated = list(megatron.evaluate(steps[0]))
    weights = {_global(name, stage): p.detach().clone() for name, p in megatron.model.module.named_parameters()}
    parallel_state.destroy_model_parallel()

    parallel_state.initialize_model_parallel(1, 1)
    alone = [dist.new_group([r]) for r in range(2)][rank]  # the reference: this rank alone, the whole model
    seed_everything(0)
    cpu = TorchBackend(build_model(shape, 256), optim, 1e-2, torch.device("cpu"), alone, alone)
    with device_scope():
        reference = [list(cpu.step(b, 1e-2)) for b in steps]
        reference_evaluated = list(cpu.evaluate(steps[0]))
    theirs = dict(cpu.model.named_parameters())
    difference = max(float((w - theirs[name]).abs().max()) for name, w in weights.items())
    parallel_state.destroy_model_parallel()
    mine = {"rank": rank, "megatron": figures, "torch": reference, "evaluate": [evaluated, reference_evaluated], "weights_max_difference": difference}
    every: list = [None, None]
    dist.all_gather_object(every, mine)
    if rank == 0:  # one line: two ranks' prints could interleave
        print(json.dumps(every))


if __name__ == "__main__":
    main()
