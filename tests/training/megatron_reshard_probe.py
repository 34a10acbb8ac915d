"""Probe (two torchrun ranks, tests/training/test_backends.py): the GPU backend's distributed
optimizer (training/backends.py MegatronBackend) saved on data parallel 2 and resumed on tensor
parallel 2, on CPU through tests/training/cuda_on_cpu.py. Two steps, a save in each of Megatron's
sharding types (dp_reshardable, fully_reshardable), a third step (the straight run) and a save of
that; then for each type a fresh backend of other initial weights on tensor parallel 2 loads the
save and takes the same third step on the whole global batch, and is saved. Prints a JSON list, one
entry per rank; the test compares the saves.

    torchrun --nproc-per-node 2 tests/training/megatron_reshard_probe.py WORK_DIR
"""

import json
import re
import sys
import warnings
from pathlib import Path

import cuda_on_cpu  # noqa: F401 - first: the CUDA-only code paths on CPU
import torch
import torch.distributed as dist
import torch.distributed.checkpoint.api

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
    shape = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, num_query_groups=2, ffn_hidden_size=128, seq_length=32, init_std=0.05)
    optim = OptimizerConfig(weight_decay=0.1)
    generator = torch.Generator().manual_seed(5)

    def batch() -> dict:
        tokens = torch.randint(0, 256, (2, 33), generator=generator)
        return {"tokens": tokens[:, :-1].contiguous(), "labels": tokens[:, 1:].contiguous(), "loss_mask": (torch.rand(2, 32, generator=generator) > 0.2).float(),
                "position_ids": torch.arange(32).expand(2, 32).contiguous()}  # fmt: skip

    steps = [[batch(), batch()] for _ in range(3)]  # a global batch: one micro-batch per data-parallel rank

    def backend(parallel: ParallelConfig, sharding: str) -> MegatronBackend:
        with device_scope():
            return MegatronBackend(build_model(shape, 256, "fp32", parallel), optim, 1e-2, "fp32", 32, 2, optimizer_sharding=sharding)

    def save(of: MegatronBackend, name: str, sharding: str) -> None:
        (work / name).mkdir(parents=True, exist_ok=True)
        of.optimizer_sharding = sharding
        with device_scope():
            ShardedWriter(False).save(of.sharded_state_dict(), work / name)

    parallel_state.initialize_model_parallel(1, 1)  # data parallel 2
    seed_everything(0)
    straight = backend(ParallelConfig(), "dp_reshardable")
    for global_batch in steps[:2]:
        straight.step([global_batch[rank]], 1e-2)
    for sharding in SHARDINGS:
        save(straight, sharding, sharding)
    mine: dict = {"rank": rank, "straight": list(straight.step([steps[2][rank]], 1e-2))}
    save(straight, "straight", "fully_reshardable")
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
            mine[sharding] = {"resumed": list(resumed.step(steps[2], 1e-2))}  # the whole global batch on the one data-parallel rank
            save(resumed, "resumed", sharding)
    parallel_state.destroy_model_parallel()
    every: list = [None, None]
    dist.all_gather_object(every, mine)
    if rank == 0:  # one line: two ranks' prints could interleave
        print(json.dumps(every))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
