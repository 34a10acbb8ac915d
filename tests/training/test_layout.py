"""Which checkpoints a run can resume on its ranks and parallel layout (training/layout.py): the CPU
backend's state loads into any layout, the GPU backend's distributed optimizer reshards over
data-parallel ranks only; checkpoints that predate the recorded sizes keep the old rule. The
trainer tests resume across layouts for real (test_trainer.py)."""

import pytest

from crawlmill.training.config import ParallelConfig
from crawlmill.training.layout import ResumeLayout

TP2 = {"tensor": 2, "pipeline": 1, "context": 1}
ONES = {"tensor": 1, "pipeline": 1, "context": 1}


def meta(world: int, parallel: dict | None) -> dict:
    return {"world_size": world, **({"parallel": parallel} if parallel is not None else {})}


def test_the_same_layout_loads_each_ranks_own_rng_states_on_either_backend():
    for reshards in (True, False):
        layout = ResumeLayout(ParallelConfig(tensor=2), reshards_model_parallel=reshards)
        assert layout.sizes() == TP2
        assert layout.rng_rank(meta(4, TP2), 4, 3, "ckpt") == 3
        assert layout.rng_rank(meta(4, None), 4, 3, "ckpt") == 3  # sizes not recorded: same world, as before


def test_the_cpu_backend_resumes_on_other_sizes_and_rank_counts():
    cpu = ResumeLayout(ParallelConfig(context=2), reshards_model_parallel=True)
    assert cpu.rng_rank(meta(2, TP2), 2, 1, "ckpt") == 1  # tensor 2 -> context 2 on the same ranks
    assert cpu.rng_rank(meta(4, TP2), 2, 1, "ckpt") == 0  # another world size: rank 0's generators
    assert ResumeLayout().rng_rank(meta(2, {"tensor": 1, "pipeline": 1, "context": 2}), 1, 0, "ckpt") == 0


def test_the_gpu_backend_resumes_on_other_data_parallel_sizes_only():
    gpu = ResumeLayout(ParallelConfig(tensor=2), reshards_model_parallel=False)
    assert gpu.rng_rank(meta(8, TP2), 4, 3, "ckpt") == 0  # 4 data-parallel ranks -> 2
    with pytest.raises(ValueError, match=r"ckpt was saved with tensor 1, pipeline 1, context 1 on 2 rank\(s\); this run has tensor 2, "
                       r"pipeline 1, context 1 on 2 rank\(s\): .*reshard over data-parallel ranks only.*resume with tensor 1, pipeline 1 and context 1"):  # fmt: skip
        gpu.rng_rank(meta(2, ONES), 2, 0, "ckpt")


def test_checkpoints_without_recorded_sizes_keep_the_old_rule():
    assert ResumeLayout(reshards_model_parallel=False).rng_rank(meta(4, None), 2, 1, "ckpt") == 0  # data parallel only: any world
    with pytest.raises(ValueError, match="ckpt was saved by 4 ranks with model parallelism; resume with the same layout"):
        ResumeLayout(ParallelConfig(tensor=2)).rng_rank(meta(4, None), 2, 0, "ckpt")
