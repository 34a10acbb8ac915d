"""Whether a checkpoint can be resumed on this run's ranks and parallel layout, and whose RNG states
each rank takes (Checkpointer.load).

A checkpoint's meta.json records the world size, the parallel sizes (tensor, pipeline, context)
that saved it and how the optimizer's states were saved (`optimizer_sharding`, RESHARDS).
dist_checkpointing keeps tensors by global key and offsets, so the model and the CPU backend's
optimizer (torch AdamW's moments, sharded as the parameters they belong to) load into any layout: a
CPU run resumes on other sizes and another number of ranks (tested: one process, then context 2 on
two ranks, then tensor 2 on them). The GPU backend's distributed optimizer saves its states in one of
Megatron's sharding types (checkpoint.optimizer_sharding): dp_reshardable (the default) reshards over
data-parallel ranks only, so such a checkpoint resumes with the same tensor, pipeline and context
sizes, on any number of data-parallel ranks; fully_reshardable loads into any layout (tested on two
ranks: data parallel 2, then tensor parallel 2). A checkpoint of one backend does not resume on the
other (their optimizers differ; checkpoint.init_from takes its weights). Checkpoints that do not
record their sizes resume on the same world size, or on any when this run is data-parallel only.

RNG states: each rank its own when the world size is the one that saved; otherwise rank 0's (DeepSeek
LLM trains without dropout, and the data order is ours, by consumed samples, not by generator).

    layout = ResumeLayout(config.parallel, backend.optimizer_sharding)
    rank_file = layout.rng_rank(meta, world, rank, folder)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .config import ParallelConfig


# What a checkpoint's optimizer states reshard over, by how they were saved (meta.json).
RESHARDS = {
    "torch": "any",  # the CPU backend: torch AdamW's moments, sharded as their parameters
    "dp_reshardable": "data",  # the GPU backend's distributed optimizer: each rank its buffer shards
    "fully_reshardable": "any",  # the same, gathered into one tensor per parameter and state
}


def _describe(sizes: dict[str, int], world: int) -> str:
    return f"tensor {sizes['tensor']}, pipeline {sizes['pipeline']}, context {sizes['context']} on {world} rank(s)"


def _backend(sharding: str) -> str:
    return "CPU backend's (torch AdamW)" if sharding == "torch" else f"GPU backend's (Megatron's distributed optimizer, {sharding})"


@dataclass(frozen=True)
class ResumeLayout:
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    # how this run's backend saves and loads its optimizer (RESHARDS); None: weights alone are loaded
    optimizer_sharding: str | None = "torch"

    def sizes(self) -> dict[str, int]:
        """What a checkpoint's meta.json records (`parallel`)."""
        return asdict(self.parallel)

    def rng_rank(self, meta: dict[str, Any], world: int, rank: int, folder: Any) -> int:
        """The rank whose RNG file this rank loads; ValueError when this run cannot load the checkpoint."""
        saved, now, saved_world = meta.get("parallel"), self.sizes(), meta["world_size"]
        mine = self.optimizer_sharding
        # not recorded: written by this backend before the record, the GPU one's in dp_reshardable
        theirs = meta.get("optimizer_sharding") or ("torch" if mine == "torch" else "dp_reshardable")
        if mine is not None and (theirs == "torch") != (mine == "torch"):
            raise ValueError(
                f"{folder} holds the {_backend(theirs)} optimizer states, which this run's {_backend(mine)} optimizer "
                f"cannot load: resume on the backend that saved it, or start from its weights with checkpoint.init_from"
            )
        if saved is None:  # written before the sizes were recorded: the old rule
            if saved_world != world and now != asdict(ParallelConfig()):
                raise ValueError(f"{folder} was saved by {saved_world} ranks with model parallelism; resume with the same layout")
        elif saved != now and mine is not None and RESHARDS.get(theirs) != "any":
            raise ValueError(
                f"{folder} was saved with {_describe(saved, saved_world)}; this run has {_describe(now, world)}: the GPU backend's "
                f"distributed optimizer states in {theirs} reshard over data-parallel ranks only: resume with tensor "
                f"{saved['tensor']}, pipeline {saved['pipeline']} and context {saved['context']}, on any number of data-parallel ranks "
                f"(with checkpoint.optimizer_sharding: fully_reshardable, the checkpoints that run saves resume on any layout)"
            )
        return rank if saved_world == world else 0
