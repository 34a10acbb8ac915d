"""Probe (two torchrun ranks, tests/training/test_backends.py): the GPU backend's distributed
optimizer (training/backends.py MegatronBackend) saved on data parallel 2 and resumed on tensor
parallel 2, on CPU through tests/training/cuda_on_cpu.py. Two steps, a save in each of Megatron's
sharding types (dp_reshardable, fully_reshardable), a third step (the straight run) and a save of
that; then for each type a fresh backend of other initial weights on tensor parallel 2 loads the
save and takes the same third step on the whole global batch, and is saved; the straight run's
state saved once more with the gather on rank 0 alone (optimizer_gather_on_one_rank) is loaded on
tensor parallel 2 and saved again. Prints a JSON list, one entry per rank; the test compares the saves.

    torchrun --nproc-per-node 2 tests/training/megatron_reshard_probe.py WORK_DIR
"""

import re
import sys
import warnings
from pathlib import Path

import cuda_on_cpu  # noqa: F401 - first: the CUDA-only code paths on CPU
import torch.distributed.checkpoint.api
from two_rank_probe import LR, SEQ, SHAPE, VOCAB, global_batches, report

warnings.filterwarnings("ignore")


SHARDINGS = ("dp_reshardable", "fully_reshardable")


def main(work: Path) -> None:
    from megatron.core import parallel_state

    from crawlmill.training.backends import MegatronBackend
    from crawlmill.training.compat import device_scope
    from crawlmill.training.config import OptimizerConfig, ParallelConfig
    from crawlmill.training.model import build_model
    from crawlmill.training.model_config import ModelConfig
    from crawlmill.training.sharded_io import ShardedWriter, load_sharded
    from crawlmill.training.trainer import init_distributed, seed_everything

    rank, _, _ = init_distributed()
    steps = global_batches()  # a global batch: one micro-batch per data-parallel rank

    def backend(parallel: ParallelConfig, sharding: str) -> MegatronBackend:
        with device_scope():
            return MegatronBackend(build_model(ModelConfig(**SHAPE), VOCAB, "fp32", parallel), OptimizerConfig(weight_decay=0.1), LR, "fp32", SEQ, 2,
                                   optimizer_sharding=sharding)  # fmt: skip

    def save(of: MegatronBackend, name: str, sharding: str) -> None:
        (work / name).mkdir(parents=True, exist_ok=True)
        of.optimizer_sharding = sharding
        with device_scope():
            ShardedWriter(False).save(of.sharded_state_dict(), work / name)

    parallel_state.initialize_model_parallel(1, 1)  # data parallel 2
    seed_everything(0)
    straight = backend(ParallelConfig(), "dp_reshardable")
    for global_batch in steps[:2]:
        straight.step([global_batch[rank]], LR)
    for sharding in SHARDINGS:
        save(straight, sharding, sharding)
    mine: dict = {"straight": list(straight.step([steps[2][rank]], LR))}
    save(straight, "straight", "fully_reshardable")
    straight.gather_on_one_rank = True  # checkpoint.optimizer_gather_on_one_rank: the same states, gathered on rank 0 alone
    save(straight, "gathered", "fully_reshardable")
    parallel_state.destroy_model_parallel()

    parallel_state.initialize_model_parallel(2, 1)  # tensor parallel 2, data parallel 1
    for index, sharding in enumerate(SHARDINGS):
        seed_everything(1 + index)  # other initial weights: the load must replace every one
        resumed = backend(ParallelConfig(tensor=2), sharding)
        try:
            with device_scope():
                resumed.load_sharded_state_dict(load_sharded(resumed.sharded_state_dict(is_loading=True, saved_sharding=sharding), work / sharding))
        except (Exception, torch.distributed.checkpoint.api.CheckpointException) as exc:  # noqa: BLE001 - reported: what this load does on another layout
            text = " ".join(str(exc).split())  # every failing rank's traceback; each ends with its cause
            missing = sorted(set(re.findall(r"(optimizer\.distributed\.\S+\(\S+ \S+\)\S+) from model not in state dict", text)))
            mine[sharding] = {"load_error": text[-300:], "missing": missing}
        else:
            mine[sharding] = {"resumed": list(resumed.step(steps[2], LR))}  # the whole global batch on the one data-parallel rank
            save(resumed, "resumed", sharding)
    reloaded = backend(ParallelConfig(tensor=2), "fully_reshardable")
    with device_scope():
        reloaded.load_sharded_state_dict(load_sharded(reloaded.sharded_state_dict(is_loading=True, saved_sharding="fully_reshardable"), work / "gathered"))
    save(reloaded, "gathered_reloaded", "fully_reshardable")  # no step between: what it loaded
    parallel_state.destroy_model_parallel()
    report(rank, mine)

if __name__ == "__main__":
    main(Path(sys.argv[1]))
