"""Pacing under BingX's request limits: a sliding-window budget the REST client draws from.

BingX limits requests per IP over sliding windows (market data: about 500 requests per 10 s).
A client that spends its budget up front and then waits is still inside the limit; a client
that only reacts to 429s gets banned (418). So every request first *acquires* from a
:class:`RateBudget`. :class:`LocalRateBudget` paces one process; the PostgreSQL-backed budget in
:mod:`goldrl_dagster.lib.storage.rate_budget` paces every process sharing one IP.

The window is stretched by a small ``slack`` so that requests granted exactly at the limit still
arrive inside it when network latency varies from request to request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

# Group -> (requests, window seconds). "market": every public quote endpoint shares one budget
# per IP; "order": order placement and cancels per IP (3/s); "order_account": the same per
# account (10/s; the IP limit binds first for one process, the account limit when several IPs
# share an account); "account": signed reads (orders, positions, balance, …), a conservative
# 10/s well inside BingX's per-endpoint limits.
DEFAULT_LIMITS: Mapping[str, tuple[int, float]] = {
    "market": (500, 10.0),
    "order": (3, 1.0),
    "order_account": (10, 1.0),
    "account": (10, 1.0),
}
DEFAULT_SLACK = 0.02  # fraction by which the window is stretched


class RateBudget(Protocol):
    """Something that makes callers wait until a request fits under the limit."""

    def acquire(self, group: str, weight: int = 1) -> None:
        """Block until ``weight`` requests of ``group`` may be sent now, and record them."""
        ...


def validate_limits(limits: Mapping[str, tuple[int, float]]) -> dict[str, tuple[int, float]]:
    """Check a ``{group: (requests, window_seconds)}`` mapping.

    Returns:
        A plain copy of the mapping.

    Raises:
        ValueError: If it is empty or a limit is not a positive count over a positive window.
    """
    if not limits:
        raise ValueError("rate limits must name at least one group")
    out: dict[str, tuple[int, float]] = {}
    for group, pair in limits.items():
        try:
            count, window = pair
        except (TypeError, ValueError):
            raise ValueError(f"limit of group {group!r} must be (requests, seconds)") from None
        if int(count) != count or count < 1 or not window > 0:
            raise ValueError(
                f"limit of group {group!r} must be (requests >= 1, seconds > 0), got {pair!r}"
            )
        out[str(group)] = (int(count), float(window))
    return out


def validate_slack(slack: float) -> float:
    """Check the fraction by which windows are stretched.

    Raises:
        ValueError: If ``slack`` is outside ``[0, 1)``.
    """
    if not 0.0 <= slack < 1.0:
        raise ValueError(f"slack must be in [0, 1), got {slack}")
    return slack


def request_window(
    limits: Mapping[str, tuple[int, float]], group: str, weight: int, slack: float
) -> tuple[int, float]:
    """Reject a request that can never be granted; return its group's limit and window.

    Returns:
        ``(requests allowed, window seconds stretched by slack)`` of the group.

    Raises:
        ValueError: If the group is unknown or the weight is not in ``1 … limit``.
    """
    if group not in limits:
        raise ValueError(f"unknown rate-limit group {group!r}; known groups: {sorted(limits)}")
    limit, window = limits[group]
    if int(weight) != weight or weight < 1 or weight > limit:
        raise ValueError(
            f"weight must be an integer in 1 … {limit} for group {group!r}, got {weight!r}"
        )
    return limit, window * (1.0 + slack)


def wait_seconds(
    grants: Iterable[tuple[float, int]], limit: int, window: float, weight: int, now: float
) -> float:
    """How long until ``weight`` more requests fit in the window.

    Args:
        grants: ``(time, weight)`` of earlier grants, oldest first (older ones are ignored).
        limit: Requests allowed per window.
        window: Window length in seconds (already stretched by any slack).
        weight: Requests wanted now.
        now: Current time, same clock as ``grants``.

    Returns:
        0.0 when they fit now, else the seconds until enough old grants leave the window.
    """
    live = [(t, w) for t, w in grants if t > now - window]
    used = sum(w for _, w in live)
    excess = used + weight - limit
    if excess <= 0:
        return 0.0
    for t, w in live:  # the oldest grants leave the window first
        excess -= w
        if excess <= 0:
            return max(0.0, t + window - now)
    raise AssertionError("unreachable: weight <= limit")  # pragma: no cover


class LocalRateBudget:
    """An in-process sliding-window budget, safe to share between threads.

    Args:
        limits: ``{group: (requests, window_seconds)}``, e.g. :data:`DEFAULT_LIMITS`.
        slack: Fraction by which every window is stretched (latency safety margin).
        clock: Monotonic time source in seconds (injectable for tests).
        sleep: Function used to wait (injectable for tests).
    """

    def __init__(
        self,
        limits: Mapping[str, tuple[int, float]] = DEFAULT_LIMITS,
        *,
        slack: float = DEFAULT_SLACK,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = validate_limits(limits)
        self.slack = validate_slack(slack)
        self._clock = clock
        self._sleep = sleep
        self._grants: dict[str, deque[tuple[float, int]]] = {g: deque() for g in self.limits}
        self._lock = threading.Lock()

    def acquire(self, group: str, weight: int = 1) -> None:
        """Block until ``weight`` requests of ``group`` fit under the limit, then record them.

        Raises:
            ValueError: If the group is unknown or the weight can never fit.
        """
        limit, window = request_window(self.limits, group, weight, self.slack)
        while True:
            with self._lock:
                now = self._clock()
                grants = self._grants[group]
                while grants and grants[0][0] <= now - window:
                    grants.popleft()
                delay = wait_seconds(grants, limit, window, weight, now)
                if delay <= 0.0:
                    grants.append((now, weight))
                    return
            self._sleep(delay)
