"""A model-only dist_checkpointing folder written without the model's weights in memory: the model
is built on the meta device (shapes, no storage), its `sharded_state_dict()` gives Megatron's own
keys, layer stacking and factories (the SwiGLU split of linear_fc1) for whichever megatron-core is
installed, and each tensor is produced only when torch.distributed.checkpoint writes it. Memory: one
parameter (a layer's largest matrix), where saving a filled model holds all of them (a 67B in bf16:
134 GB). Used by `crawlmill import` (import_hf.py).

    strategy = ProducingSave(meta_model, produce)      # produce(name) -> that parameter's tensor
    ShardedWriter(False, strategy=strategy).save({"model": meta_model.sharded_state_dict()}, folder)

The folder is Megatron's torch_dist format as its own strategy writes it (the same `.metadata`
entries; the common files written by dist_checkpointing.save itself; a single `.distcp` file):
Megatron loads it and reshards it by global key like any other. Only where the bytes come from
differs, not their form. One process (the import's one-rank group).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from megatron.core.dist_checkpointing.strategies.torch import (
    MCoreSavePlanner, TorchDistSaveShardedStrategy, _replace_state_dict_keys_with_sharded_keys, mcore_to_pyt_state_dict,
)  # fmt: skip
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint import save as dcp_save


class _ProducingPlanner(MCoreSavePlanner):
    """Megatron's save planner, except that a tensor still on the meta device is produced when it
    is written: `produce(name)` gives the whole parameter it is a view of (by storage), and the
    view's own geometry (a layer's slice, the gate or up half) is taken from it."""

    def __init__(self, produce: Callable[[str], torch.Tensor], names: dict[int, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.produce, self.names = produce, names
        self._last: tuple[str | None, torch.Tensor | None] = (None, None)  # the SwiGLU halves come from one parameter

    def resolve_data(self, write_item: Any) -> Any:
        data = super().resolve_data(write_item)
        if not isinstance(data, torch.Tensor) or not data.is_meta:
            return data
        name = self.names[data.untyped_storage()._cdata]
        if self._last[0] != name:
            self._last = (None, None)  # freed before the next one is made
            self._last = (name, self.produce(name))
        whole = self._last[1]
        if data.storage_offset() == 0 and data.numel() == whole.numel() and data.is_contiguous():
            return whole.view(data.size())  # the whole parameter (a layer's, with its stacking axis): no copy
        return whole.as_strided(data.size(), data.stride(), data.storage_offset()).clone()


class _Writer(FileSystemWriter):
    """torch's writer records its path in `.metadata` as a Path object, which sharded_io's data-only
    unpickler refuses (Megatron's writer records a string); nothing reads it back: none is recorded."""

    def storage_meta(self) -> None:
        return None


class ProducingSave(TorchDistSaveShardedStrategy):
    """The torch_dist save strategy (same backend name and version in metadata.json) for a model
    built on the meta device; synchronous only."""

    def __init__(self, meta_model: torch.nn.Module, produce: Callable[[str], torch.Tensor]) -> None:
        super().__init__("torch_dist", 1)
        params = dict(meta_model.named_parameters())
        if any(not p.is_meta for p in params.values()):
            raise ValueError("ProducingSave: build the model on the meta device (torch.device('meta'))")
        self.names = {p.untyped_storage()._cdata: name for name, p in params.items()}
        self.shapes = {name: (tuple(p.shape), p.dtype) for name, p in params.items()}
        self.produce = produce

    def _checked(self, name: str) -> torch.Tensor:
        tensor = self.produce(name)
        want, dtype = self.shapes[name]
        if tuple(tensor.shape) != want:
            raise ValueError(f"{name} is {tuple(tensor.shape)}, the model's {want}")
        return tensor.to(dtype).contiguous()

    def save(self, sharded_state_dict: Any, checkpoint_dir: Path) -> None:
        sharded_state_dict, _, _ = _replace_state_dict_keys_with_sharded_keys(sharded_state_dict, self.keep_only_main_replica)
        planner = _ProducingPlanner(self._checked, self.names, dedup_replicated_tensors=False, flatten_state_dict=False)
        writer = _Writer(str(checkpoint_dir), single_file_per_rank=True, thread_count=1)  # one file, written in the plan's order
        try:
            dcp_save(mcore_to_pyt_state_dict(sharded_state_dict, False), storage_writer=writer, planner=planner)
        except BaseException as exc:  # noqa: BLE001 - torch gathers a write's error into a CheckpointException (a BaseException)
            failures = [f[0] if isinstance(f, tuple) else f for f in getattr(exc, "failures", {}).values()]
            cause = next((f for f in failures if isinstance(f, Exception)), None)
            if cause is None:
                raise
            raise cause from None  # what producing a tensor raised (an unreadable file, a wrong shape), as it was

    def async_save(self, sharded_state_dict: Any, checkpoint_dir: Path) -> Any:
        raise NotImplementedError("ProducingSave writes synchronously")
