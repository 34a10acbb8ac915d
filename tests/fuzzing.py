"""Settings every fuzz test shares (tests/pipeline/ingest/test_fuzz.py, test_config_fuzz.py,
tests/shards/test_mmidx_fuzz.py, tests/training/test_data_fuzz.py): reproducible (no example
database, derandomized) and bounded in time: each example within EXAMPLE_SECONDS (hypothesis's
deadline, for examples that return) and each test within TEST_SECONDS (the `fuzz_time_limit`
fixture of tests/conftest.py: SIGALRM, so that a hang on malformed input fails the test instead of
stalling the suite). Memory is bounded where a test measures it (tracemalloc)."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from hypothesis import HealthCheck, settings

EXAMPLE_SECONDS = 30  # an example takes milliseconds; the first one may import Megatron
TEST_SECONDS = 300


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=timedelta(seconds=EXAMPLE_SECONDS), database=None, derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )  # fmt: skip


@contextmanager
def time_limit(seconds: int, what: str = "the test") -> Iterator[None]:
    """A hang (e.g. a parser loop that never advances) raises TimeoutError instead of stalling the suite."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"{what} ran past {seconds} s: a hang on malformed input")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

