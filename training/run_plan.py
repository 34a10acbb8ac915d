"""The numbers a training run follows, settled from its config before the first step: global batch,
peak LR, length in steps and tokens, and DeepSeek's M; the planner's Equation 1 (planner.py) fills
the batch and LR that the config leaves out, for the run's compute C = M·D.

    plan = plan_run(config, data_parallel)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TrainConfig


@dataclass
class RunPlan:
    """The numbers a run follows, settled before the first step."""

    global_batch: int  # sequences per step
    peak_lr: float
    total_steps: int  # the schedule's length
    train_tokens: float
    tokens_per_step: int
    model_scale: float  # DeepSeek's M: non-embedding FLOPs per token
    compute: float  # M x train_tokens
    data_parallel: int
    micro_batches: int  # per rank and step
    note: str | None = None  # max_steps overriding train_tokens: said at the start


def plan_run(config: TrainConfig, data_parallel: int) -> RunPlan:
    """Batch, peak LR and length from the config, the planner's Equation 1 filling what it leaves out."""
    seq = config.model.seq_length
    model_scale = config.model.non_embedding_flops_per_token()
    batch, lr = config.global_batch_size, config.optimizer.lr
    if batch is None or lr is None:
        if config.train_tokens is None:
            raise ValueError("global_batch_size and optimizer.lr default to the planner's values for the run's compute: give train_tokens")
        from .planner import global_batch, optimum

        best = optimum(model_scale * config.train_tokens)  # Equation 1 for the run's compute C = M·D
        lr = lr if lr is not None else best.lr_opt
        if batch is None:
            batch = global_batch(best.batch_tokens_opt, seq, config.micro_batch_size, data_parallel)
    unit = config.micro_batch_size * data_parallel
    if batch % unit:
        raise ValueError(f"global_batch_size {batch} is not a multiple of micro_batch_size x data-parallel ranks ({unit})")
    tokens_per_step = batch * seq
    note = None
    if config.max_steps is not None:
        # The schedule's length, as `--max-steps` says: its milestones and the run's compute (what
        # run.json records and `plan fit` reads) follow the steps trained, not a train_tokens it cuts short.
        steps = config.max_steps
        tokens = float(steps * tokens_per_step)
        if config.train_tokens is not None and abs(tokens - config.train_tokens) > 0.01 * config.train_tokens:
            note = (
                f"max_steps {steps:,} x {tokens_per_step:,} tokens makes the run {tokens:,.0f} tokens, not the config's train_tokens "
                f"{config.train_tokens:,.0f}: the schedule's milestones and the compute recorded (M x tokens = {model_scale * tokens:.3g} FLOPs) "
                "follow the steps" + ("; batch and LR stay Equation 1's for train_tokens" if config.global_batch_size is None or config.optimizer.lr is None else "")
            )
    elif config.train_tokens is not None:
        tokens = config.train_tokens
        steps = max(1, math.ceil(tokens / tokens_per_step))
    else:
        raise ValueError("give max_steps or train_tokens: how long to train")
    return RunPlan(batch, lr, steps, tokens, tokens_per_step, model_scale, model_scale * tokens, data_parallel, batch // unit, note)
