"""DeepSeek LLM's multi-step schedule at every boundary, and cosine / WSD beside it."""

import pytest

from crawlmill.training.config import ScheduleConfig
from crawlmill.training.schedule import Schedule

PEAK = 4.2e-4
BATCH_TOKENS = 2304 * 4096  # the 7B's tokens per step
TOTAL = 2.0e12


def seven_b(**config) -> Schedule:
    return Schedule(ScheduleConfig(**config), PEAK, TOTAL, BATCH_TOKENS)


def first_step_at(schedule: Schedule, share: float) -> int:
    """The first step whose consumed tokens reach `share` of the total."""
    return -(-int(share * TOTAL) // BATCH_TOKENS)


def test_multistep_warmup_then_316_then_10_percent():
    s = seven_b()
    assert s.lr_at(0) == pytest.approx(PEAK / 2000)
    assert s.lr_at(999) == pytest.approx(PEAK / 2)
    assert s.lr_at(1999) == pytest.approx(PEAK) and s.lr_at(2000) == pytest.approx(PEAK)
    at_80, at_90 = first_step_at(s, 0.8), first_step_at(s, 0.9)
    assert s.lr_at(at_80 - 1) == PEAK and s.lr_at(at_80) == pytest.approx(0.316 * PEAK)
    assert s.lr_at(at_90 - 1) == pytest.approx(0.316 * PEAK) and s.lr_at(at_90) == pytest.approx(0.1 * PEAK)
    assert s.lr_at(s.total_steps - 1) == pytest.approx(0.1 * PEAK)
    assert (at_80 - 1) * BATCH_TOKENS < 0.8 * TOTAL <= at_80 * BATCH_TOKENS  # the milestone is in tokens


def test_milestones_follow_tokens_whatever_the_batch():
    small = Schedule(ScheduleConfig(warmup_steps=10), PEAK, 1_000_000, 1000)
    large = Schedule(ScheduleConfig(warmup_steps=10), PEAK, 1_000_000, 4000)
    assert small.lr_at(799) == PEAK and small.lr_at(800) == pytest.approx(0.316 * PEAK)
    assert large.lr_at(199) == PEAK and large.lr_at(200) == pytest.approx(0.316 * PEAK)


def test_cosine_and_wsd_and_constant():
    cosine = seven_b(kind="cosine", min_lr_ratio=0.1)
    assert cosine.lr_at(1999) == pytest.approx(PEAK)
    middle = (2000 + cosine.total_steps) // 2
    assert cosine.lr_at(middle) == pytest.approx(0.55 * PEAK, rel=1e-3)
    assert cosine.lr_at(cosine.total_steps) == pytest.approx(0.1 * PEAK)
    values = [cosine.lr_at(i) for i in range(2000, cosine.total_steps, 1000)]
    assert values == sorted(values, reverse=True)
    wsd = seven_b(kind="wsd", decay_fraction=0.2, min_lr_ratio=0.0)
    start = first_step_at(wsd, 0.8)
    assert wsd.lr_at(start - 1) == PEAK and wsd.lr_at(start) == pytest.approx(PEAK, rel=1e-3)
    assert wsd.lr_at(first_step_at(wsd, 0.9)) == pytest.approx(0.5 * PEAK, rel=1e-3)
    assert seven_b(kind="constant").lr_at(10**6) == PEAK


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="milestones"):
        ScheduleConfig(milestones=[0.9, 0.8])
    with pytest.raises(ValueError, match="one factor each"):
        ScheduleConfig(milestones=[0.8], factors=[0.3, 0.1])
