"""Learning-rate schedules: DeepSeek LLM's multi-step (Section 2.3), and cosine and WSD beside it.

Multi-step: linear warm-up over `warmup_steps` to the peak, then the peak until 80% of the training
tokens, 31.6% of the peak until 90%, then 10% (milestones and factors configurable). Megatron-Core's
OptimizerParamScheduler has no such schedule; this is Composer's MultiStepWithWarmupScheduler with
t_warmup, milestones [0.8, 0.9] and gamma 0.316 (0.316² ≈ 0.1).

`lr_at(step)` is the rate of the update that step `step` (0-based) makes; the milestones compare
the training tokens consumed before that step with the run's total, so the schedule follows tokens,
as the paper states it, whatever the batch.

    schedule = Schedule(ScheduleConfig(), peak_lr=4.2e-4, total_tokens=2e12, tokens_per_step=2304 * 4096)
    schedule.lr_at(0), schedule.lr_at(1999), schedule.lr_at(200_000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ScheduleConfig


@dataclass
class Schedule:
    config: ScheduleConfig
    peak_lr: float
    total_tokens: float
    tokens_per_step: int

    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.total_tokens / self.tokens_per_step))

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return self.peak_lr * (step + 1) / c.warmup_steps
        progress = step * self.tokens_per_step / self.total_tokens  # share of tokens consumed before this step
        if c.kind == "constant":
            return self.peak_lr
        if c.kind == "multistep":
            factor = 1.0
            for milestone, value in zip(c.milestones, c.factors):
                if progress >= milestone:
                    factor = value
            return self.peak_lr * factor
        floor = self.peak_lr * c.min_lr_ratio
        if c.kind == "cosine":
            warm = c.warmup_steps * self.tokens_per_step / self.total_tokens
            span = max(1e-12, 1.0 - warm)
            done = min(1.0, max(0.0, (progress - warm) / span))
            return floor + (self.peak_lr - floor) * 0.5 * (1 + math.cos(math.pi * done))
        # wsd: warm-up, stable at the peak, then linear decay over the last `decay_fraction` of tokens
        start = 1.0 - c.decay_fraction
        if progress < start:
            return self.peak_lr
        done = min(1.0, (progress - start) / c.decay_fraction)
        return self.peak_lr + (floor - self.peak_lr) * done
