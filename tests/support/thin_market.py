"""Seeded candles of a thin market: any fixed interval, with chosen bars missing (no ticks)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from goldrl_dagster.lib.market.candles import INTERVAL_MS, conform_candles

THIN_START = datetime(2025, 6, 2, tzinfo=UTC)


def thin_market_candles(
    n: int,
    seed: int,
    *,
    interval: str = "1m",
    start: datetime = THIN_START,
    instrument: str = "PAXG-USDT",
    missing: tuple[tuple[int, int], ...] = (),
    source: str = "import",
) -> pl.DataFrame:
    """A seeded random walk of ``n`` bar slots with the slots in each ``(first, count)`` removed.

    Args:
        n: Bar slots from ``start`` (so ``n`` minus the missing bars are returned).
        seed: Random seed.
        interval: A fixed-length interval, e.g. ``5m``.
        start: Open time of slot 0.
        instrument: Symbol.
        missing: ``(first slot, bar count)`` runs with no bar: the no-tick gaps.
        source: Candle source label.
    """
    rng = np.random.default_rng(seed)
    step = timedelta(milliseconds=INTERVAL_MS[interval])
    close = 3000.0 * np.exp(np.cumsum(rng.normal(0.0, 8e-4, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0.0, 6e-4, n)) * close
    keep = np.ones(n, dtype=bool)
    for first, count in missing:
        keep[first : first + count] = False
    frame = pl.DataFrame(
        {
            "instrument": instrument,
            "interval": interval,
            "open_time": [start + i * step for i in range(n)],
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.gamma(2.0, 5.0, n),
            "source": source,
        }
    ).filter(pl.Series(keep))
    return conform_candles(frame)
