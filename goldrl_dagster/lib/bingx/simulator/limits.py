"""BingX-like request limits per client IP, with temporary bans for clients that keep pushing.

Each request falls in a group (``"market"`` for quotes, ``"order"`` for trading paths) counted
over a sliding window per IP. Over the limit the request is refused (HTTP 429, or HTTP 200 with
code 100410). ``ban_after`` refusals within ``ban_window`` seconds ban the IP for
``ban_seconds``: every request then gets HTTP 418.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from goldrl_dagster.lib.bingx.ratelimit import DEFAULT_LIMITS, validate_limits

Verdict = Literal["ok", "limited", "banned"]


@dataclass(frozen=True)
class SimRateLimits:
    """How the simulator enforces limits.

    Attributes:
        limits: ``{group: (requests, window_seconds)}``; BingX's by default.
        ban_after: Refusals within ``ban_window`` that trigger a ban.
        ban_window: Seconds over which refusals are counted.
        ban_seconds: Length of a ban.
        reply: ``"http"`` answers HTTP 429, ``"code"`` answers HTTP 200 with code 100410.
    """

    limits: Mapping[str, tuple[int, float]] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    ban_after: int = 50
    ban_window: float = 10.0
    ban_seconds: float = 30.0
    reply: Literal["http", "code"] = "http"

    def __post_init__(self) -> None:
        validate_limits(self.limits)
        if self.ban_after < 1 or self.ban_window <= 0 or self.ban_seconds <= 0:
            raise ValueError("ban_after, ban_window and ban_seconds must be positive")
        if self.reply not in ("http", "code"):
            raise ValueError(f"reply must be 'http' or 'code', got {self.reply!r}")


ORDER_WRITE_PATHS = (
    "/trade/order",
    "/trade/order/test",
    "/trade/allOpenOrders",
    "/trade/batchOrders",
)


def path_group(path: str, method: str = "GET") -> str:
    """Rate-limit group of a REST request.

    ``order``: placing and cancelling orders; ``account``: other signed requests; ``market``:
    public quotes.
    """
    if method.upper() in ("POST", "DELETE") and path.endswith(ORDER_WRITE_PATHS):
        return "order"
    if "/quote/" in path or "/market/" in path or path.endswith("/server/time"):
        return "market"
    return "account"


class IpRateLimiter:
    """Sliding-window counters per (IP, group), refusal counters and bans; thread-safe.

    Args:
        config: The limits.
        clock: Monotonic seconds (injectable for tests).

    Attributes:
        granted: Requests let through.
        refused: Requests refused for exceeding a limit.
        banned: Requests refused because the IP was banned.
    """

    def __init__(self, config: SimRateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.granted = 0
        self.refused = 0
        self.banned = 0
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], deque[float]] = {}
        self._refusals: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def ban(self, ip: str, seconds: float) -> None:
        """Ban an IP now (fault injection)."""
        with self._lock:
            self._banned_until[ip] = self._clock() + seconds

    def _fits(self, key: tuple[str, str], group: str, now: float) -> bool:
        limit, window = self.config.limits.get(group, self.config.limits["market"])
        requests = self._requests.setdefault(key, deque())
        while requests and requests[0] <= now - window:
            requests.popleft()
        return len(requests) < limit

    def check(self, ip: str, path: str, method: str = "GET", api_key: str = "") -> Verdict:
        """Count one request from ``ip`` to ``path`` and say whether to serve it.

        Order placement and cancels also count against the API key's own limit
        (``order_account``), as BingX limits orders per account as well as per IP.
        """
        group = path_group(path, method)
        keys = [((ip, group), group)]
        if group == "order" and api_key and "order_account" in self.config.limits:
            keys.append((("key:" + api_key, "order_account"), "order_account"))
        with self._lock:
            now = self._clock()
            if self._banned_until.get(ip, float("-inf")) > now:
                self.banned += 1
                return "banned"
            if all(self._fits(key, g, now) for key, g in keys):
                for key, _ in keys:
                    self._requests[key].append(now)
                self.granted += 1
                return "ok"
            self.refused += 1
            refusals = self._refusals.setdefault(ip, deque())
            refusals.append(now)
            while refusals and refusals[0] <= now - self.config.ban_window:
                refusals.popleft()
            if len(refusals) >= self.config.ban_after:
                self._banned_until[ip] = now + self.config.ban_seconds
                refusals.clear()
            return "limited"
