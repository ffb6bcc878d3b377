"""Seeded synthetic candle frames for unit tests (never used by the product)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from goldrl_dagster.lib.market.candles import conform_candles

DEFAULT_START = datetime(2025, 3, 1, 22, 0, tzinfo=UTC)


def random_walk_candles(
    n: int,
    seed: int,
    start: datetime = DEFAULT_START,
    instrument: str = "PAXG-USDT",
) -> pl.DataFrame:
    """A seeded geometric random walk as consistent 1m OHLCV candles in the canonical schema."""
    rng = np.random.default_rng(seed)
    close = 3000.0 * np.exp(np.cumsum(rng.normal(0.0, 5e-4, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0.0, 5e-4, n)) * close
    times = pl.datetime_range(
        start, start + timedelta(minutes=n - 1), "1m", eager=True, time_zone="UTC"
    )
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": instrument,
                "interval": "1m",
                "open_time": times,
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.gamma(2.0, 5.0, n),
                "source": "simulator",
            }
        )
    )
