"""Signing BingX requests, and the offset between our clock and BingX's.

BingX signs the **unencoded** parameter string ``k1=v1&k2=v2…`` (keys sorted, ``timestamp``
and ``recvWindow`` included) with HMAC-SHA256 of the API secret, lower-case hex, sent as the
last query parameter ``signature``; values are URL-encoded on the wire (JSON values such as
``stopLoss`` need it). The string signed is exactly the sent query decoded, so the exchange (and
the simulator) can verify it from the request line alone.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode

from goldrl_dagster.lib.bingx.credentials import Credentials

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000

WireValue = str | int | float | Decimal | bool


def wire_value(name: str, value: WireValue) -> str:
    """Render one parameter value the way BingX expects it.

    Booleans are ``true``/``false``; numbers are plain decimals (never exponent notation).

    Raises:
        ValueError: If the value is None, not finite, or of an unsupported type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"parameter {name!r} is not finite: {value!r}")
        value = Decimal(repr(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"parameter {name!r} is not finite: {value!r}")
        text = format(value.normalize(), "f")
        return text
    if isinstance(value, str):
        return value
    raise ValueError(f"parameter {name!r} has unsupported type {type(value).__name__}")


def canonical_query(params: Mapping[str, WireValue]) -> str:
    """The string BingX signs: ``k=v`` pairs sorted by key, joined by ``&``, unencoded."""
    rendered = {str(k): wire_value(str(k), v) for k, v in params.items()}
    return "&".join(f"{k}={rendered[k]}" for k in sorted(rendered))


def signed_query(
    params: Mapping[str, WireValue],
    credentials: Credentials,
    timestamp_ms: int,
    recv_window_ms: int | None = DEFAULT_RECV_WINDOW_MS,
) -> str:
    """The query string to send: sorted, URL-encoded parameters, then ``signature`` last.

    Args:
        params: Request parameters (without ``timestamp``/``recvWindow``/``signature``).
        credentials: The key and secret.
        timestamp_ms: BingX time of the request, epoch ms.
        recv_window_ms: Validity window in ms (BingX allows up to 5000 by default); None omits.

    Raises:
        ValueError: If a reserved parameter is passed or a value cannot be rendered.
    """
    reserved = {"timestamp", "recvWindow", "signature"} & set(params)
    if reserved:
        raise ValueError(f"parameters {sorted(reserved)} are set by the signer")
    full: dict[str, WireValue] = dict(params)
    full["timestamp"] = int(timestamp_ms)
    if recv_window_ms is not None:
        if not 0 < recv_window_ms <= MAX_RECV_WINDOW_MS:
            raise ValueError(f"recvWindow must be in 1 … {MAX_RECV_WINDOW_MS} ms")
        full["recvWindow"] = int(recv_window_ms)
    rendered = {k: wire_value(k, v) for k, v in full.items()}
    ordered = [(k, rendered[k]) for k in sorted(rendered)]
    signature = credentials.sign("&".join(f"{k}={v}" for k, v in ordered))
    return urlencode(ordered) + "&signature=" + signature


@dataclass(frozen=True)
class ClockSample:
    """One measurement of BingX's clock.

    Attributes:
        offset_ms: BingX time minus local time at the midpoint of the request.
        round_trip_ms: How long the request took (the offset's uncertainty is half of it).
        speed: Virtual milliseconds per real millisecond on the server (1 on BingX; the local
            simulator may run faster and says so in a header).
    """

    offset_ms: float
    round_trip_ms: float
    speed: float = 1.0


class ServerClock:
    """BingX's time, estimated from our clock plus a measured offset.

    Args:
        fetch_server_ms: Returns ``(server time ms, server speed)``; called by :meth:`sync`.
        local_ms: Our clock in epoch ms (injectable for tests).
        max_age_s: A sample older than this is refreshed before use.
        warn_skew_ms: An offset larger than this is logged by the caller as a clock problem.
    """

    def __init__(
        self,
        fetch_server_ms: Callable[[], tuple[int, float]],
        *,
        local_ms: Callable[[], float] = lambda: time.time() * 1000.0,
        max_age_s: float = 300.0,
        warn_skew_ms: float = 1000.0,
    ) -> None:
        self._fetch = fetch_server_ms
        self._local_ms = local_ms
        self._max_age_ms = max_age_s * 1000.0
        self.warn_skew_ms = warn_skew_ms
        self.sample: ClockSample | None = None
        self._local_at_sample = 0.0
        self._lock = threading.Lock()

    def sync(self) -> ClockSample:
        """Measure the offset now (one server-time request)."""
        before = self._local_ms()
        server_ms, speed = self._fetch()
        after = self._local_ms()
        midpoint = (before + after) / 2.0
        sample = ClockSample(float(server_ms) - midpoint, after - before, float(speed))
        with self._lock:
            self.sample = sample
            self._local_at_sample = midpoint
        return sample

    def now_ms(self) -> int:
        """BingX's current time in epoch ms (measuring the offset first when stale)."""
        with self._lock:
            sample, at = self.sample, self._local_at_sample
        local = self._local_ms()
        if sample is None or local - at > self._max_age_ms:
            sample = self.sync()
            with self._lock:
                at = self._local_at_sample
            local = self._local_ms()
        return int(at + sample.offset_ms + (local - at) * sample.speed)
