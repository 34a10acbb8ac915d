"""Probe (two torchrun ranks, tests/training/test_backends.py): the GPU backend (Megatron's DDP,
distributed optimizer and pipeline schedule, training/backends.py MegatronBackend) with pipeline
parallelism 2, one decoder layer a stage, on CPU through tests/training/cuda_on_cpu.py, from the
whole model's initial weights, against the CPU backend of one rank holding the whole model. Prints
a JSON list, one entry per rank.

    torchrun --nproc-per-node 2 tests/training/megatron_pipeline_probe.py
"""

import warnings

import cuda_on_cpu  # noqa: F401 - first: the CUDA-only code paths on CPU
import torch
from two_rank_probe import LR, SEQ, SHAPE, VOCAB, global_batches, one_rank_reference, report

warnings.filterwarnings("ignore")


def _global(name: str, stage: int) -> str:
    """A stage's parameter name as the whole model calls it: its one decoder layer is layer `stage`."""
    return name.replace("decoder.layers.0.", f"decoder.layers.{stage}.")


def main() -> None:
    from megatron.core import parallel_state

    from crawlmill.training.backends import MegatronBackend
    from crawlmill.training.compat import device_scope
    from crawlmill.training.config import OptimizerConfig, ParallelConfig
    from crawlmill.training.model import build_model
    from crawlmill.training.model_config import ModelConfig
    from crawlmill.training.trainer import init_distributed, seed_everything

    rank, _, _ = init_distributed()
    steps = global_batches()
    parallel_state.initialize_model_parallel(1, 1)
    seed_everything(0)  # as the reference starts
    start = {name: p.detach().clone() for name, p in build_model(ModelConfig(**SHAPE), VOCAB).named_parameters()}
    parallel_state.destroy_model_parallel()

    parallel_state.initialize_model_parallel(1, 2)
    stage = parallel_state.get_pipeline_model_parallel_rank()
    with device_scope():
        model = build_model(ModelConfig(**SHAPE), VOCAB, "fp32", ParallelConfig(pipeline=2))
        with torch.no_grad():  # a stage initializes its layers from its own generator: given the whole model's instead
            for name, p in model.named_parameters():
                p.copy_(start[_global(name, stage)])
        megatron = MegatronBackend(model, OptimizerConfig(weight_decay=0.1), LR, "fp32", SEQ, 2)
    figures = [list(megatron.step(b, LR)) for b in steps]  # outside device_scope: batches go to "cuda" (the shim's CPU)
    evaluated = list(megatron.evaluate(steps[0]))
    weights = {_global(name, stage): p.detach().clone() for name, p in megatron.model.module.named_parameters()}
    parallel_state.destroy_model_parallel()
    report(rank, {"megatron": figures, "evaluate": evaluated, **one_rank_reference(rank, steps, weights)})


if __name__ == "__main__":
    main()
