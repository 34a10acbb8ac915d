"""Probe (a process of its own, tests/training/test_backends.py): the GPU backend, Megatron's
DistributedDataParallel and distributed optimizer (training/backends.py MegatronBackend), run on CPU
through tests/training/cuda_on_cpu.py, against the CPU backend; then saved after 2 steps, loaded into
a fresh backend as a resume does, and stepped again. Each precision given is checked in turn, in
this one process (one start of torch and Megatron for both): `check PRECISION` printed as it begins,
one JSON line when it ends (run_checks in test_backends.py reads them).

    python tests/training/megatron_backend_probe.py WORK_DIR fp32|bf16 [fp32|bf16...]
"""

import json
import sys
import warnings
from pathlib import Path

import cuda_on_cpu  # noqa: F401 - first: the CUDA-only code paths on CPU
import torch

warnings.filterwarnings("ignore")


def main(precision: str, work: Path) -> None:
    from megatron.core import parallel_state

    from crawlmill.training.backends import MegatronBackend, TorchBackend
    from crawlmill.training.compat import device_scope
    from crawlmill.training.config import OptimizerConfig
    from crawlmill.training.model import build_model
    from crawlmill.training.model_config import ModelConfig
    from crawlmill.training.sharded_io import ShardedWriter, load_sharded
    from crawlmill.training.trainer import init_distributed, seed_everything

    init_distributed()  # once: a later call keeps the group
    parallel_state.initialize_model_parallel(1, 1)
    shape = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=2, ffn_hidden_size=128, seq_length=32)
    optim = OptimizerConfig(weight_decay=0.5)  # large enough to show which weights decay
    generator = torch.Generator().manual_seed(5)

    def batch() -> dict:
        tokens = torch.randint(0, 256, (2, 33), generator=generator)
        return {"tokens": tokens[:, :-1].contiguous(), "labels": tokens[:, 1:].contiguous(), "loss_mask": torch.ones(2, 32),
                "position_ids": torch.arange(32).expand(2, 32).contiguous()}  # fmt: skip

    steps = [[batch(), batch()] for _ in range(3)]

    def megatron() -> MegatronBackend:
        seed_everything(0)
        with device_scope():
            return MegatronBackend(build_model(shape, vocab_size=256, precision=precision), optim, 1e-2, precision, 32, 2)

    def run(backend, batches) -> list[float]:  # outside device_scope: the step moves its batches to "cuda" (the shim's CPU)
        return list(backend.step(batches, 1e-2))

    straight = megatron()
    figures = [run(straight, b) for b in steps[:2]]
    folder = work / "checkpoint"
    folder.mkdir(parents=True)
    with device_scope():
        ShardedWriter(False).save(straight.sharded_state_dict(), folder)
    figures.append(run(straight, steps[2]))
    resumed = megatron()
    with device_scope():
        resumed.load_sharded_state_dict(load_sharded(resumed.sharded_state_dict(is_loading=True), folder))
    resumed_figures = run(resumed, steps[2])
    weights = lambda backend: dict(backend.model.module.named_parameters())  # noqa: E731
    inner = lambda backend: [part.optimizer for part in backend.optimizer.chained_optimizers]  # noqa: E731
    result = {
        "megatron": figures,
        "resumed_step": resumed_figures,
        "resumed_equal": all(torch.equal(a, b) for a, b in zip(weights(straight).values(), weights(resumed).values(), strict=True)),
        "adam_steps": [sorted({float(s["step"]) for o in inner(b) for s in o.state.values()}) for b in (straight, resumed)],
    }
    if precision == "fp32":  # the CPU backend on the same model and batches
        seed_everything(0)
        cpu = TorchBackend(build_model(shape, vocab_size=256), optim, 1e-2, torch.device("cpu"), parallel_state.get_data_parallel_group(), parallel_state.get_model_parallel_group())
        with device_scope():
            result["torch"] = [list(cpu.step(b, 1e-2)) for b in steps]
        theirs = dict(cpu.model.named_parameters())
        result["weights_max_difference"] = max(float((w - theirs[name]).abs().max()) for name, w in weights(straight).items())
    parallel_state.destroy_model_parallel()  # the next precision starts from none, as a process of its own would
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    for precision in sys.argv[2:]:
        print(f"check {precision}", flush=True)
        main(precision, Path(sys.argv[1]) / precision)
