"""Frozen settings of a live-engine run, from the environment plus explicit overrides."""

from __future__ import annotations

import math
from dataclasses import dataclass

from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.config import load_settings


@dataclass(frozen=True)
class LiveSettings:
    """What the live engine trades and where it listens.

    Attributes:
        instrument: Exchange symbol.
        interval: Bar interval of the decisions.
        rest_url: BingX REST base URL (history from the feature anchor, gap fill).
        ws_url: BingX market WebSocket URL.
        model_id: Model to run instead of the champion (paper mode only), or None.
        duration_seconds: Stop after this long, or None to run until signalled.
        order_quantity: Size of a full position in base units.
        starting_cash: Paper account's starting balance in the quote currency.
        heartbeat_seconds: Interval of the heartbeat log line.
        max_bar_age_seconds: A bar that closed longer ago than this (exchange time) is never
            decided on: its features are updated and it is recorded as skipped.
    """

    instrument: str
    interval: str
    rest_url: str
    ws_url: str
    model_id: str | None = None
    duration_seconds: float | None = None
    order_quantity: float = 1.0
    starting_cash: float = 100_000.0
    heartbeat_seconds: float = 10.0
    max_bar_age_seconds: float = 90.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.order_quantity) or self.order_quantity <= 0:
            raise ValueError(
                f"order_quantity must be a positive finite number, got {self.order_quantity}"
            )
        if not math.isfinite(self.starting_cash) or self.starting_cash <= 0:
            raise ValueError(
                f"starting_cash must be a positive finite number, got {self.starting_cash}"
            )
        if not math.isfinite(self.max_bar_age_seconds) or self.max_bar_age_seconds <= 0:
            raise ValueError(
                f"max_bar_age_seconds must be positive, got {self.max_bar_age_seconds}"
            )
        if self.duration_seconds is not None and self.duration_seconds <= 0:
            raise ValueError(f"duration_seconds must be positive, got {self.duration_seconds}")
        if self.interval != "1m":
            raise ValueError(f"the live engine trades 1m bars for now, got {self.interval!r}")

    @classmethod
    def from_environment(
        cls,
        *,
        instrument: str = "XAUT-USDT",
        model_id: str | None = None,
        duration_seconds: float | None = None,
        order_quantity: float = 1.0,
    ) -> LiveSettings:
        """Build settings from ``GOLDRL_BINGX_*`` variables plus the given overrides."""
        env = load_settings()
        return cls(
            instrument=resolve_symbol(instrument),
            interval="1m",
            rest_url=env.bingx_base_url,
            ws_url=env.bingx_ws_url,
            model_id=model_id,
            duration_seconds=duration_seconds,
            order_quantity=order_quantity,
        )
