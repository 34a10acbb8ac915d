"""Sizes as people read them, shared by the stage's summary (stage.py) and the trainer's errors
(train.py): its own module, as stage.py imports train.py."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """17 bytes, 12.3 KiB, 5.3 MiB, 2.04 GiB: small sizes never round to 0.0."""
    if n < 1024:
        return f"{int(n):,} byte{'s' if n != 1 else ''}"
    for unit, scale, digits in (("KiB", 2**10, 1), ("MiB", 2**20, 1), ("GiB", 2**30, 2)):
        if n < 1000 * scale or unit == "GiB":  # 1,000 KiB and up: 0.98 MiB
            return f"{n / scale:,.{digits}f} {unit}"
    raise AssertionError
