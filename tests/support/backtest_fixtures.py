"""Synthetic candles and contract specs shared by the backtest tests (imported, not a conftest)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.market.instrument import InstrumentSpec

XAUT = InstrumentSpec(
    symbol="XAUT-USDT",
    asset="XAUT",
    currency="USDT",
    price_precision=2,
    quantity_precision=4,
    min_quantity=0.001,
    min_notional=5.0,
    maker_fee_rate=0.0002,
    taker_fee_rate=0.0005,
    max_long_leverage=50,
    max_short_leverage=20,
)
PAXG0 = InstrumentSpec(
    symbol="PAXG-USDT",
    asset="PAXG",
    currency="USDT",
    price_precision=2,
    quantity_precision=0,
    min_quantity=1.0,
    min_notional=5.0,
    maker_fee_rate=0.0002,
    taker_fee_rate=0.0005,
    max_long_leverage=10,
    max_short_leverage=10,
)
START = dt.datetime(2025, 1, 6, tzinfo=dt.UTC)  # a Monday, so weekly bars open on Mondays


def _open_times(n: int, interval: str) -> list[dt.datetime]:
    if interval.endswith("M"):  # calendar months
        step = int(interval[:-1])
        return [
            dt.datetime(2025 + (i * step) // 12, 1 + (i * step) % 12, 1, tzinfo=dt.UTC)
            for i in range(n)
        ]
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[interval[-1]]
    step = dt.timedelta(**{unit: int(interval[:-1])})
    return [START + i * step for i in range(n)]


def build_candles(
    n: int = 300,
    *,
    seed: int = 7,
    interval: str = "1m",
    spec: InstrumentSpec = XAUT,
    volume: float = 1_000_000.0,
) -> pl.DataFrame:
    """Seeded random walk around 2000 on the price tick, canonical candle schema."""
    rng = np.random.default_rng(seed)
    close = np.round(2000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n))), 2)
    open_ = np.r_[np.round(close[0] - rng.normal(0.0, 1.0), 2), close[:-1]]
    high = np.round(np.maximum(open_, close) + np.abs(rng.normal(0.0, 1.0, n)), 2)
    low = np.round(np.minimum(open_, close) - np.abs(rng.normal(0.0, 1.0, n)), 2)
    frame = pl.DataFrame(
        {
            "instrument": spec.symbol,
            "interval": interval,
            "open_time": _open_times(n, interval),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "source": "simulator",
        }
    )
    return conform_candles(frame)
