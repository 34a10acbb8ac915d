"""Probe (two torchrun ranks, tests/training/test_backends.py): the GPU backend (Megatron's DDP and
distributed optimizer, training/backends.py MegatronBackend) with context parallelism 2 and the
local spec's attention, on CPU through tests/training/cuda_on_cpu.py, against the CPU backend of one
rank holding whole sequences. Megatron's own RoPE cut (get_pos_emb_on_this_cp_rank, the GPU path)
runs here, so a batch split other than Megatron's layout shows. Prints a JSON list, one entry per rank.

    torchrun --nproc-per-node 2 tests/training/megatron_context_probe.py
"""

import warnings

import cuda_on_cpu  # noqa: F401 - first: the CUDA-only code paths on CPU
from two_rank_probe import LR, SEQ, SHAPE, VOCAB, global_batches, one_rank_reference, report

warnings.filterwarnings("ignore")


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
    parallel_state.initialize_model_parallel(1, 1, context_parallel_size=2)
    seed_everything(0)
    with device_scope():
        megatron = MegatronBackend(build_model(ModelConfig(**SHAPE), VOCAB, "fp32", ParallelConfig(context=2)), OptimizerConfig(weight_decay=0.1), LR, "fp32", SEQ, 2)
    figures = [list(megatron.step(b, LR)) for b in steps]  # outside device_scope: batches go to "cuda" (the shim's CPU)
    evaluated = list(megatron.evaluate(steps[0]))
    weights = {name: p.detach().clone() for name, p in megatron.model.module.named_parameters()}
    parallel_state.destroy_model_parallel()
    report(rank, {"megatron": figures, "evaluate": evaluated, **one_rank_reference(rank, steps, weights)})


if __name__ == "__main__":
    main()
