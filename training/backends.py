"""One optimizer step over a global batch, two ways.

- `TorchBackend` (CPU, and any device without Megatron's CUDA optimizer): torch.optim.AdamW on the
  Megatron model, weight decay on matrices only (norm weights are exempt, as Megatron does), the
  loss of the global batch as the mean over its loss tokens; data-parallel ranks sum their
  gradients with all_reduce, so R ranks give the update of one rank doing all micro batches. With
  tensor parallelism each rank holds a slice of the split weights and a copy of the rest: the
  gradient norm that clipping uses is Megatron's, over every slice once and every copy once. With
  context parallelism each rank takes its share of every sequence (context_parallel.py) and
  `dp_group` is the data x context parallel group, over which losses, loss tokens and gradients sum.
- `MegatronBackend` (GPU): Megatron's DistributedDataParallel with fp32 gradient buffers, the
  distributed optimizer (bf16 parameters, fp32 master weights and Adam states sharded over data
  parallel ranks), Megatron's forward-backward schedule (pipeline parallelism included) and its
  gradient clipping; the same per-token mean loss (calculate_per_token_loss) and the same weight
  decay on matrices only (Megatron's parameter groups, set_group_hyperparameters); each context
  parallel rank its share of every sequence, as on CPU.

Checkpoints go through dist_checkpointing (sharded_io.py): `sharded_state_dict(is_loading)` gives
the model's and the optimizer's sharded state (or, for loading, the template to fill), and
`load_sharded_state_dict` puts a loaded one back. The CPU backend's optimizer state is torch AdamW's
moments, sharded as their parameters: any parallel layout loads it. The distributed optimizer's is
in one of Megatron's sharding types (checkpoint.optimizer_sharding; layout.RESHARDS), recorded in
meta.json so that a resume builds its template in the type the checkpoint holds (layout.py).

`step(micro_batches, lr)` returns (mean loss over the batch's loss tokens, gradient norm before
clipping); `evaluate(micro_batches)` returns (summed token loss in nats, loss tokens) over every
data-parallel rank. Bits per byte need only the targets' bytes besides, which the trainer counts
from the same batches.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any, Iterator

import torch
import torch.distributed as dist

from .compat import causal_mask, device_scope
from .config import OptimizerConfig
from .context_parallel import split_sequence
from .layout import RESHARDS
from .sharded_io import torch_optimizer_sharded_state, torch_optimizer_state

SHARDINGS = tuple(kind for kind in RESHARDS if kind != "torch")  # Megatron's, for the distributed optimizer's states


def _all_reduce(tensor: torch.Tensor, group: Any) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size(group) > 1:
        dist.all_reduce(tensor, group=group)
    return tensor


def _on(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def context_share(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This context-parallel rank's share of each [batch, sequence] tensor (all of it without CP)."""
    from megatron.core import parallel_state

    size = parallel_state.get_context_parallel_world_size()
    if size == 1:
        return batch
    rank = parallel_state.get_context_parallel_rank()
    return {k: split_sequence(v, 1, rank, size) for k, v in batch.items()}


class TorchBackend:
    def __init__(self, model: Any, optim: OptimizerConfig, peak_lr: float, device: torch.device, dp_group: Any, mp_group: Any) -> None:
        self.model, self.optim, self.device, self.dp_group, self.mp_group = model, optim, device, dp_group, mp_group
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=peak_lr, betas=(optim.beta1, optim.beta2), eps=optim.eps,
        )  # fmt: skip
        self._mask: torch.Tensor | None = None

    def _token_losses(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seq = batch["tokens"].shape[1]
        if self.model.config.context_parallel_size > 1:  # a share of each sequence: the attention masks its chunks itself
            self._mask = None
        elif self._mask is None or self._mask.shape[-1] != seq:
            self._mask = causal_mask(seq, self.device)
        with device_scope():
            return self.model(batch["tokens"], batch["position_ids"], self._mask, labels=batch["labels"]).float()

    def step(self, micro_batches: list[dict[str, torch.Tensor]], lr: float) -> tuple[float, float]:
        self.model.train()
        batches = [_on(context_share(b), self.device) for b in micro_batches]
        count = _all_reduce(sum(b["loss_mask"].sum() for b in batches).double().reshape(1), self.dp_group)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros(1, dtype=torch.float64, device=self.device)
        for batch in batches:
            summed = (self._token_losses(batch) * batch["loss_mask"]).sum()
            with device_scope():  # activation recomputation runs the layers again in here
                (summed / count.float()).backward()
            total += summed.detach().double()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if dist.is_initialized() and dist.get_world_size(self.dp_group) > 1:
            for p in params:
                dist.all_reduce(p.grad, group=self.dp_group)
        norm = self._clip_gradients(params)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return float(_all_reduce(total, self.dp_group) / count), float(norm)

    @torch.no_grad()
    def _clip_gradients(self, params: list[torch.nn.Parameter]) -> torch.Tensor:
        """The global L2 norm of the gradients, then clipping to `grad_clip`. Each tensor-parallel
        rank adds its slices of the split weights and, on TP rank 0 only, the weights every TP rank
        holds a copy of; the sum over the model-parallel group is the norm of the whole model's
        gradient (torch's clip_grad_norm_ alone would see one rank's share)."""
        from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

        local = torch.nn.utils.get_total_norm([p.grad for p in params if param_is_not_tensor_parallel_duplicate(p)])
        norm = _all_reduce(local.double().square(), self.mp_group).sqrt().float()
        if self.optim.grad_clip > 0:
            torch.nn.utils.clip_grads_with_norm_(params, self.optim.grad_clip, norm)
        return norm

    @torch.no_grad()
    def evaluate(self, micro_batches: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in micro_batches:
            batch = _on(context_share(batch), self.device)
            totals[0] += (self._token_losses(batch) * batch["loss_mask"]).sum().double()
            totals[1] += batch["loss_mask"].sum().double()
        _all_reduce(totals, self.dp_group)
        return float(totals[0]), float(totals[1])

    optimizer_sharding = "torch"  # torch AdamW's moments, sharded as their parameters: any layout loads them (layout.py)

    def sharded_state_dict(self, is_loading: bool = False, saved_sharding: str | None = None) -> dict[str, Any]:
        if is_loading and not self.optimizer.state:  # a fresh optimizer: its moments to be filled
            for group in self.optimizer.param_groups:
                for p in group["params"]:
                    self.optimizer.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
        model = self.model.sharded_state_dict()
        return {"model": model, "optimizer": torch_optimizer_sharded_state(self.optimizer, model)}

    def load_sharded_state_dict(self, loaded: dict[str, Any]) -> None:
        self.model.load_state_dict(loaded["model"])
        self.optimizer.load_state_dict(torch_optimizer_state(loaded["optimizer"]))


class MegatronBackend:
    """The GPU path (see the module docstring). Needs CUDA: Megatron's DDP and optimizer assume it."""

    def __init__(
        self, model: Any, optim: OptimizerConfig, peak_lr: float, precision: str, seq_length: int, micro_batch_size: int,
        optimizer_sharding: str = "dp_reshardable", gather_on_one_rank: bool = False,
    ) -> None:  # fmt: skip
        """`optimizer_sharding`, `gather_on_one_rank`: how checkpoints hold the distributed
        optimizer's states (Megatron's sharding types, layout.RESHARDS; config.CheckpointConfig)."""
        from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
        from megatron.core.optimizer import OptimizerConfig as MegatronOptimizerConfig
        from megatron.core.optimizer import get_megatron_optimizer
        from megatron.core.pipeline_parallel import get_forward_backward_func

        self.optim = optim
        config = model.config
        config.calculate_per_token_loss = True
        ddp_config = DistributedDataParallelConfig(grad_reduce_in_fp32=True, overlap_grad_reduce=False, use_distributed_optimizer=True)
        self.model = DistributedDataParallel(config=config, ddp_config=ddp_config, module=model)
        bf16 = precision == "bf16"
        self.optimizer = get_megatron_optimizer(
            MegatronOptimizerConfig(
                optimizer="adam", lr=peak_lr, weight_decay=optim.weight_decay, adam_beta1=optim.beta1, adam_beta2=optim.beta2,
                adam_eps=optim.eps, clip_grad=optim.grad_clip, bf16=bf16, params_dtype=torch.bfloat16 if bf16 else torch.float32,
                use_distributed_optimizer=True,
            ),
            [self.model],
        )  # fmt: skip
        config.grad_scale_func = self.optimizer.scale_loss
        config.no_sync_func = self.model.no_sync
        config.finalize_model_grads_func = finalize_model_grads
        self.forward_backward = get_forward_backward_func()
        self.seq_length, self.micro_batch_size = seq_length, micro_batch_size
        if optimizer_sharding not in SHARDINGS:
            raise ValueError(f"optimizer sharding {optimizer_sharding!r}: one of {', '.join(SHARDINGS)}")
        self.optimizer_sharding, self.gather_on_one_rank = optimizer_sharding, gather_on_one_rank

    @staticmethod
    def _loss(loss_mask: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        summed = (output.float() * loss_mask).sum()
        tokens = loss_mask.sum().to(torch.int)
        return summed, tokens, {"lm loss": torch.stack([summed.detach(), tokens.float()])}

    def _forward_step(self, data_iterator: Any, model: Any) -> tuple[torch.Tensor, Any]:
        batch = _on(context_share(next(data_iterator)), torch.device("cuda", torch.cuda.current_device()))
        output = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
        return output, partial(self._loss, batch["loss_mask"].float())

    def _run(self, micro_batches: list[dict[str, torch.Tensor]], forward_only: bool) -> list[dict[str, Any]]:
        return self.forward_backward(
            forward_step_func=self._forward_step, data_iterator=iter(micro_batches), model=[self.model],
            num_microbatches=len(micro_batches), seq_length=self.seq_length, micro_batch_size=self.micro_batch_size,
            forward_only=forward_only,
        )  # fmt: skip

    @staticmethod
    def _totals(reports: list[dict[str, Any]]) -> torch.Tensor:
        """(summed loss, loss tokens) over data (x context) parallel ranks; the last pipeline stage has them."""
        from megatron.core import parallel_state

        totals = torch.zeros(2, dtype=torch.float64, device="cuda")
        if parallel_state.is_pipeline_last_stage():
            for report in reports:
                totals += report["lm loss"].double()
        _all_reduce(totals, parallel_state.get_data_parallel_group(with_context_parallel=True))
        return _all_reduce(totals, parallel_state.get_pipeline_model_parallel_group())

    def step(self, micro_batches: list[dict[str, torch.Tensor]], lr: float) -> tuple[float, float]:
        self.model.train()
        set_group_hyperparameters(self.optimizer.param_groups, lr, self.optim.weight_decay)
        self.model.zero_grad_buffer()
        self.optimizer.zero_grad()
        totals = self._totals(self._run(micro_batches, forward_only=False))
        _, grad_norm, _ = self.optimizer.step()
        return float(totals[0] / totals[1].clamp(min=1)), float(grad_norm or 0.0)

    @torch.no_grad()
    def evaluate(self, micro_batches: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
        self.model.eval()
        totals = self._totals(self._run(micro_batches, forward_only=True))
        return float(totals[0]), float(totals[1])

    def _torch_adams(self) -> list[Any]:
        """The distributed optimizers whose inner optimizer is torch's Adam (no Transformer Engine or
        Apex FusedAdam installed): their `step` is per parameter, not per group."""
        parts = getattr(self.optimizer, "chained_optimizers", [self.optimizer])
        return [part for part in parts if isinstance(part.optimizer, (torch.optim.Adam, torch.optim.AdamW))]

    def sharded_state_dict(self, is_loading: bool = False, saved_sharding: str | None = None) -> dict[str, Any]:
        """The state to save, or (`is_loading`) the template to load into, in `saved_sharding`, the
        checkpoint's (meta.json; checkpoints that predate the record are dp_reshardable)."""
        if is_loading:
            for part in self._torch_adams():  # its state_dict() needs a state, which a fresh one lacks
                fill_fresh_adam_state(part.optimizer, partial(part.init_state_fn, config=part.config))
        sharding = (saved_sharding or "dp_reshardable") if is_loading else self.optimizer_sharding
        if sharding not in SHARDINGS:
            raise ValueError(f"the checkpoint's optimizer states are {sharding!r}, which the GPU backend's distributed optimizer does not load")
        metadata = {"distrib_optim_sharding_type": sharding, "distrib_optim_fully_reshardable_mem_efficient": self.gather_on_one_rank}
        model = self.model.module.sharded_state_dict()
        return {"model": model, "optimizer": self.optimizer.sharded_state_dict(model, is_loading=is_loading, metadata=metadata)}

    def load_sharded_state_dict(self, loaded: dict[str, Any]) -> None:
        self.model.module.load_state_dict(loaded["model"])
        adams = self._torch_adams()
        with torch.no_grad(), contextlib.ExitStack() as stack:  # no_grad: Megatron's loads copy in place into views of fp32 parameters (the norms)
            for part in adams:
                stack.enter_context(steps_left_alone(part))
            self.optimizer.load_state_dict(loaded["optimizer"])
        for part in adams:
            restore_adam_steps(part.optimizer)


def set_group_hyperparameters(param_groups: list[dict[str, Any]], lr: float, weight_decay: float) -> None:
    """This step's LR, and the weight decay of each of Megatron's parameter groups. Megatron marks
    norm weights and biases `wd_mult` 0 but leaves applying it to its LR scheduler, which we do not
    use: the optimizer was built with one weight decay for every group, norms included."""
    for group in param_groups:
        group["lr"] = lr
        group["weight_decay"] = weight_decay * group.get("wd_mult", 1.0)


def fill_fresh_adam_state(optimizer: torch.optim.Optimizer, init_state: Any) -> None:
    """Give a torch Adam that has not stepped yet the state it would have (moments by `init_state`,
    Megatron's init_state_fn; step 0 per parameter), so that Megatron's DistributedOptimizer can make
    the template a checkpoint loads into (its state_dict() asserts one step over the states)."""
    if optimizer.state:
        return
    init_state(optimizer)
    for group in optimizer.param_groups:
        for p in group["params"]:
            optimizer.state[p].setdefault("step", torch.tensor(0.0))


@contextlib.contextmanager
def steps_left_alone(distributed_optimizer: Any) -> Iterator[None]:
    """Megatron's fully_reshardable load (0.16 and 0.19) copies each of a parameter's state tensors
    from the checkpoint, and takes the names from the inner optimizer's state: torch Adam's has a
    `step` the checkpoint does not hold (Transformer Engine's and Apex's fused Adam keep none), a
    KeyError. Within this, the step is copied onto itself; restore_adam_steps sets the saved one."""
    original = distributed_optimizer._set_main_param_and_optimizer_states

    def set_states(model_param: Any, tensors: dict[str, Any]) -> None:
        group_index, group_order = distributed_optimizer.model_param_group_index_map[model_param]
        state = distributed_optimizer.optimizer.state[distributed_optimizer.optimizer.param_groups[group_index]["params"][group_order]]
        original(model_param, {"step": state["step"], **tensors} if "step" in state else tensors)

    distributed_optimizer._set_main_param_and_optimizer_states = set_states
    try:
        yield
    finally:
        del distributed_optimizer._set_main_param_and_optimizer_states  # the class's method again


def restore_adam_steps(optimizer: torch.optim.Optimizer) -> None:
    """After Megatron's DistributedOptimizer.load_state_dict, a step tensor of its own for each
    parameter, holding its group's saved step. Megatron puts one tensor shared by every parameter in
    their states (torch Adam then adds 1 to it once per parameter each step), and a dp_reshardable
    checkpoint, which does not save the per-parameter step, copies the load template's 0
    (fill_fresh_adam_state) into it: either way Adam's bias correction after a resume is wrong. The
    saved step is in the parameter groups, where Megatron's state_dict() keeps it."""
    for group in optimizer.param_groups:
        if group.get("step") is None:
            continue
        for p in group["params"]:
            if p in optimizer.state:
                optimizer.state[p]["step"] = torch.tensor(float(group["step"]))
