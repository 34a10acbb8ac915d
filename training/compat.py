"""Where Megatron-Core versions and devices differ, in one place.

crawlmill trains on megatron-core 0.16.1 (the newest for Python 3.11) and on the newest release
(Python 3.12+). Their differences that touch us, and the CPU caveats of both (measured here,
../shared/docs/ENVIRONMENT.md):

- 0.16 has no `megatron.training` (so no MegatronPretrainingSampler): the data position is ours
  (data.py), in both versions alike.
- Layer specs: the Transformer Engine spec when TE imports and CUDA is there, else the local spec
  (with torch's fused attention as its core attention unless the config asks for Megatron's);
  spec builders gained keyword arguments between releases, so only the ones a version knows are passed.
- On CPU, RoPE moves `inv_freq` to `torch.cuda.current_device()` on every forward and attention's
  global memory buffer allocates there: `device_scope` maps that call to the CPU while we run.
- `model_parallel_cuda_manual_seed` asserts CUDA unless it builds the inference RNG tracker, which
  works on CPU (and carries no dropout state we use: DeepSeek LLM trains without dropout).
- Activation recomputation (tensor_parallel.checkpoint) saves and restores the CUDA generator's
  state around each recomputed block; a machine without CUDA has none: `device_scope` makes those
  two calls no-ops, and the backward pass, where the recomputation runs, is inside the scope too.
- Under context parallelism RoPE cuts its position embeddings to the rank's share with an index it
  pins and moves to CUDA (get_pos_emb_on_this_cp_rank): `device_scope` puts the same cut on the CPU
  (context_parallel.split_sequence).
- A causal mask must be given explicitly on CPU (the default one is built on "cuda").
- dist_checkpointing (both versions) calls `torch.cuda.synchronize()` before it writes and builds
  its collectives' flags on `torch.cuda.current_device()`: `checkpoint_scope` makes the first a
  no-op (a machine without CUDA has nothing to wait for) and the second "cpu" (gloo's device).
- dist_checkpointing.save's asynchronous writer: 0.16 has Megatron's own; newer releases default to
  nvidia-resiliency-ext's (`async_strategy="nvrx"`, a package we do not require) and still offer
  Megatron's as `async_strategy="mcore"`, which `async_save_options` asks for where it exists.
- A sharded load's errors: 0.16 gathers every rank's (torch.distributed.checkpoint raises the same
  CheckpointException on all), 0.19 does not (a rank whose file is damaged fails alone while the
  others load): the trainer agrees on a damaged checkpoint by its own all-reduce, in both.
- Checkpoint files (seen here): 0.19 writes one `.distcp` per rank, the model's tensors before the
  optimizer's, and no `common.pt`; 0.16 two per rank and a `common.pt`. Our readers and writers
  (checkpoint_weights.py, lazy_save.py) go through Megatron's and torch's metadata, not the files' names.

    from crawlmill.training.compat import device_scope, layer_spec
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
from typing import Any, Callable, Iterator

import torch


def megatron_version() -> str:
    from importlib.metadata import version

    return version("megatron-core")


def use_cuda() -> bool:
    return torch.cuda.is_available()


def has_transformer_engine() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


@contextlib.contextmanager
def device_scope() -> Iterator[None]:
    """On CPU, `torch.cuda.current_device()` answers "cpu" inside this scope, and Megatron's
    activation recomputation saves and restores no CUDA generator (see the module docstring)."""
    if use_cuda():
        yield
        return
    from megatron.core.models.common.embeddings import rotary_pos_embedding
    from megatron.core.tensor_parallel import random as megatron_random

    from .context_parallel import split_sequence

    original = torch.cuda.current_device
    get_state, set_state = megatron_random._get_cuda_rng_state, megatron_random._set_cuda_rng_state
    rope_share = rotary_pos_embedding.get_pos_emb_on_this_cp_rank
    torch.cuda.current_device = lambda: "cpu"  # type: ignore[assignment]
    megatron_random._get_cuda_rng_state = lambda *args, **kwargs: torch.empty(0, dtype=torch.uint8)
    megatron_random._set_cuda_rng_state = lambda *args, **kwargs: None
    rotary_pos_embedding.get_pos_emb_on_this_cp_rank = lambda emb, dim, group: split_sequence(emb, dim, group.rank(), group.size())
    try:
        yield
    finally:
        torch.cuda.current_device = original  # type: ignore[assignment]
        megatron_random._get_cuda_rng_state, megatron_random._set_cuda_rng_state = get_state, set_state
        rotary_pos_embedding.get_pos_emb_on_this_cp_rank = rope_share


@contextlib.contextmanager
def checkpoint_scope() -> Iterator[None]:
    """Around dist_checkpointing's calls: on CPU, `device_scope` and a no-op `torch.cuda.synchronize`."""
    if use_cuda():
        yield
        return
    original = torch.cuda.synchronize
    torch.cuda.synchronize = lambda device=None: None  # type: ignore[assignment]
    try:
        with device_scope():
            yield
    finally:
        torch.cuda.synchronize = original  # type: ignore[assignment]


def async_save_options() -> dict[str, Any]:
    """dist_checkpointing.save's keyword arguments for Megatron's own asynchronous writer."""
    from megatron.core import dist_checkpointing

    return {"async_strategy": "mcore"} if "async_strategy" in inspect.signature(dist_checkpointing.save).parameters else {}


def _call_known(builder: Callable[..., Any], **kwargs: Any) -> Any:
    """`builder(**kwargs)` with only the keyword arguments this Megatron version accepts."""
    accepted = inspect.signature(builder).parameters
    return builder(**{k: v for k, v in kwargs.items() if k in accepted})


def layer_spec(attention: str = "sdpa", local: bool = False) -> tuple[Any, str]:
    """The transformer layer spec and its name: "transformer_engine" (unless `local`), else "local"
    with `attention` as its core attention ("sdpa": training/attention.py; "megatron": Megatron's
    DotProductAttention). Both save the same weight keys; TE's final norm adds an extra state that
    a local-spec checkpoint lacks and that a load keeps (sharded_io.keep_unsaved_extra_state)."""
    from megatron.core.models.gpt import gpt_layer_specs as specs

    common = dict(num_experts=None, moe_grouped_gemm=False, qk_layernorm=False)
    if not local and use_cuda() and has_transformer_engine():
        return _call_known(specs.get_gpt_layer_with_transformer_engine_spec, **common), "transformer_engine"
    spec = _call_known(specs.get_gpt_layer_local_spec, **common, normalization="RMSNorm")
    if attention == "sdpa":
        from .attention import with_sdpa_attention

        return with_sdpa_attention(spec), "local+sdpa"
    return spec, "local"


def block_spec(layer: Any, name: str, config: Any) -> Any:
    """The decoder block: `layer` (layer_spec's, called `name`) for each layer of this pipeline stage,
    and a final norm of the same kind. Megatron's own default for a layer spec takes Transformer
    Engine's norm whenever TE imports and Apex's fused LayerNorm (which refuses RMSNorm) when only
    Apex does, also under the local spec: a meta-device model (lazy_save.py) then held a real final
    norm, and a local model on an Apex machine could not be built."""
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build

    if name == "transformer_engine":
        from megatron.core.extensions.transformer_engine import TENorm as norm
    else:
        from megatron.core.transformer.torch_norm import WrappedTorchNorm as norm
    return TransformerBlockSubmodules(layer_specs=[layer] * get_num_layers_to_build(config), layer_norm=norm)


def seed_model_parallel(seed: int) -> None:
    from megatron.core import tensor_parallel

    if use_cuda():
        tensor_parallel.model_parallel_cuda_manual_seed(seed)
    else:
        tensor_parallel.model_parallel_cuda_manual_seed(seed, inference_rng_tracker=True)


def _rng_tracker() -> Any:
    """Megatron's RNG tracker. Asking for it creates it when nothing has yet: on CPU it must be the
    inference (CPU) kind, or a later seed_model_parallel would find a CUDA one it cannot seed."""
    from megatron.core import tensor_parallel

    return _call_known(tensor_parallel.get_cuda_rng_tracker, inference_rng_tracker=not use_cuda())


def rng_tracker_states() -> dict[str, Any]:
    return _rng_tracker().get_states()


def set_rng_tracker_states(states: dict[str, Any]) -> None:
    if states:
        _rng_tracker().set_states(states)


def causal_mask(seq_length: int, device: torch.device) -> torch.Tensor:
    """Megatron's attention mask convention: True where attention is masked (future positions)."""
    return torch.triu(torch.ones(seq_length, seq_length, dtype=torch.bool, device=device), diagonal=1).view(1, 1, seq_length, seq_length)
