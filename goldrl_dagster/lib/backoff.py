"""Exponential backoff with jitter, shared by the BingX clients, the streams and the engine."""

from __future__ import annotations

import random


def check_backoff(name: str, backoff: tuple[float, float]) -> tuple[float, float]:
    """Check a ``(first, cap)`` pair of seconds.

    Raises:
        ValueError: Unless ``0 < first <= cap``.
    """
    first, cap = backoff
    if not 0 < first <= cap:
        raise ValueError(f"{name} must be (first > 0, cap >= first), got {backoff}")
    return float(first), float(cap)


def backoff_delay(
    attempt: int, backoff: tuple[float, float], *, full_jitter: bool = False
) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    The ceiling doubles from ``first`` up to ``cap``. With ``full_jitter`` the wait is uniform in
    ``[0, ceiling]`` (spreads many clients apart); otherwise in ``[ceiling / 2, ceiling]``, never
    near zero (for limits and dropped connections, where the cause must have time to clear).
    """
    first, cap = backoff
    ceiling = min(cap, first * 2.0**attempt)
    if full_jitter:
        return random.uniform(0.0, ceiling)
    return ceiling / 2.0 + random.uniform(0.0, ceiling / 2.0)
