"""Which checkpoints a run can resume on its ranks and parallel layout (training/layout.py): the CPU
backend's state loads into any layout; the GPU backend's distributed optimizer reshards over
data-parallel ranks only in dp_reshardable, over any layout in fully_reshardable; a checkpoint of
one backend does not resume on the other; checkpoints that predate the records keep the old rule.
The trainer tests resume across layouts for real on CPU (test_distributed.py), and test_backends.py
the distributed optimizer's two sharding types on another tensor-parallel size."""

import pytest

from crawlmill.training.config import ParallelConfig
from crawlmill.training.layout import ResumeLayout

TP2 = {"tensor": 2, "pipeline": 1, "context": 1}
ONES = {"tensor": 1, "pipeline": 1, "context": 1}


def meta(world: int, parallel: dict | None, sharding: str | None = None) -> dict:
    return {"world_size": world, **({"parallel": parallel} if parallel is not None else {}), **({"optimizer_sharding": sharding} if sharding else {})}


def test_the_same_layout_loads_each_ranks_own_rng_states_on_either_backend():
    for sharding in ("torch", "dp_reshardable", "fully_reshardable"):
        layout = ResumeLayout(ParallelConfig(tensor=2), sharding)
        assert layout.sizes() == TP2
        assert layout.rng_rank(meta(4, TP2, sharding), 4, 3, "ckpt") == 3
        assert layout.rng_rank(meta(4, None), 4, 3, "ckpt") == 3  # nothing recorded: same world, as before


def test_the_cpu_backend_resumes_on_other_sizes_and_rank_counts():
    cpu = ResumeLayout(ParallelConfig(context=2))
    assert cpu.rng_rank(meta(2, TP2, "torch"), 2, 1, "ckpt") == 1  # tensor 2 -> context 2 on the same ranks
    assert cpu.rng_rank(meta(4, TP2), 2, 1, "ckpt") == 0  # another world size: rank 0's generators
    assert ResumeLayout().rng_rank(meta(2, {"tensor": 1, "pipeline": 1, "context": 2}, "torch"), 1, 0, "ckpt") == 0


def test_the_gpu_backend_resumes_dp_reshardable_states_on_other_data_parallel_sizes_only():
    for mine in ("dp_reshardable", "fully_reshardable"):  # the saved type decides, not this run's
        gpu = ResumeLayout(ParallelConfig(tensor=2), mine)
        assert gpu.rng_rank(meta(8, TP2, "dp_reshardable"), 4, 3, "ckpt") == 0  # 4 data-parallel ranks -> 2
        for recorded in ("dp_reshardable", None):  # None: saved before the type was recorded, in dp_reshardable
            with pytest.raises(ValueError, match=r"ckpt was saved with tensor 1, pipeline 1, context 1 on 2 rank\(s\); this run has tensor 2, "
                               r"pipeline 1, context 1 on 2 rank\(s\): .*in dp_reshardable reshard over data-parallel ranks only.*"
                               r"resume with tensor 1, pipeline 1 and context 1.*optimizer_sharding: fully_reshardable"):  # fmt: skip
                gpu.rng_rank(meta(2, ONES, recorded), 2, 0, "ckpt")


def test_the_gpu_backend_resumes_fully_reshardable_states_on_any_layout():
    gpu = ResumeLayout(ParallelConfig(tensor=2, context=2), "dp_reshardable")
    assert gpu.rng_rank(meta(2, ONES, "fully_reshardable"), 4, 3, "ckpt") == 0
    assert gpu.rng_rank(meta(4, {"tensor": 1, "pipeline": 4, "context": 1}, "fully_reshardable"), 4, 3, "ckpt") == 3


def test_a_checkpoint_of_one_backend_is_refused_by_the_other_and_its_weights_load_anywhere():
    with pytest.raises(ValueError, match=r"ckpt holds the CPU backend's \(torch AdamW\) optimizer states, which this run's GPU backend's "
                       r"\(Megatron's distributed optimizer, dp_reshardable\) optimizer cannot load: .*checkpoint.init_from"):  # fmt: skip
        ResumeLayout(optimizer_sharding="dp_reshardable").rng_rank(meta(1, ONES, "torch"), 1, 0, "ckpt")
    with pytest.raises(ValueError, match=r"ckpt holds the GPU backend's \(Megatron's distributed optimizer, fully_reshardable\) optimizer states"):
        ResumeLayout().rng_rank(meta(1, ONES, "fully_reshardable"), 1, 0, "ckpt")
    weights = ResumeLayout(ParallelConfig(tensor=2), optimizer_sharding=None)  # checkpoint.init_from
    assert weights.rng_rank(meta(1, ONES, "dp_reshardable"), 2, 1, "ckpt") == 0 and weights.rng_rank(meta(2, TP2, "torch"), 2, 1, "ckpt") == 1


def test_checkpoints_without_recorded_sizes_keep_the_old_rule():
    assert ResumeLayout(optimizer_sharding="dp_reshardable").rng_rank(meta(4, None), 2, 1, "ckpt") == 0  # data parallel only: any world
    with pytest.raises(ValueError, match="ckpt was saved by 4 ranks with model parallelism; resume with the same layout"):
        ResumeLayout(ParallelConfig(tensor=2)).rng_rank(meta(4, None), 2, 0, "ckpt")
