"""Whether a checkpoint can be resumed on this run's ranks and parallel layout, and whose RNG states
each rank takes (Checkpointer.load).

A checkpoint's meta.json records the world size and the parallel sizes (tensor, pipeline, context)
that saved it. dist_checkpointing keeps tensors by global key and offsets, so the model and the CPU
backend's optimizer (torch AdamW's moments, sharded as the parameters they belong to) load into any
layout: a CPU run resumes on other sizes and another number of ranks (tested: one process, then
context 2 on two ranks, then tensor 2 on them). The GPU backend's distributed optimizer saves its states in Megatron's
dp_reshardable form, which reshards over data-parallel ranks only: a GPU run resumes with the same
tensor, pipeline and context sizes, on any number of data-parallel ranks. Checkpoints that do not
record their sizes resume on the same world size, or on any when this run is data-parallel only.

RNG states: each rank its own when the world size is the one that saved; otherwise rank 0's (DeepSeek
LLM trains without dropout, and the data order is ours, by consumed samples, not by generator).

    layout = ResumeLayout(config.parallel, reshards_model_parallel=not use_cuda())
    rank_file = layout.rng_rank(meta, world, rank, folder)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .config import ParallelConfig


def _describe(sizes: dict[str, int], world: int) -> str:
    return f"tensor {sizes['tensor']}, pipeline {sizes['pipeline']}, context {sizes['context']} on {world} rank(s)"


@dataclass(frozen=True)
class ResumeLayout:
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    reshards_model_parallel: bool = True  # the CPU backend's state loads into other tensor/pipeline/context sizes

    def sizes(self) -> dict[str, int]:
        """What a checkpoint's meta.json records (`parallel`)."""
        return asdict(self.parallel)

    def rng_rank(self, meta: dict[str, Any], world: int, rank: int, folder: Any) -> int:
        """The rank whose RNG file this rank loads; ValueError when this run cannot load the checkpoint."""
        saved, now, saved_world = meta.get("parallel"), self.sizes(), meta["world_size"]
        if saved is None:  # written before the sizes were recorded: the old rule
            if saved_world != world and now != asdict(ParallelConfig()):
                raise ValueError(f"{folder} was saved by {saved_world} ranks with model parallelism; resume with the same layout")
        elif saved != now and not self.reshards_model_parallel:
            raise ValueError(
                f"{folder} was saved with {_describe(saved, saved_world)}; this run has {_describe(now, world)}: the GPU backend's "
                f"distributed optimizer states reshard over data-parallel ranks only (dp_reshardable): resume with tensor "
                f"{saved['tensor']}, pipeline {saved['pipeline']} and context {saved['context']}, on any number of data-parallel ranks"
            )
        return rank if saved_world == world else 0
