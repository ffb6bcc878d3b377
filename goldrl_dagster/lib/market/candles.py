"""The canonical candle frame: one schema for every producer and consumer of OHLCV bars."""

from __future__ import annotations

import polars as pl

SOURCES = ("bingx_rest", "bingx_ws", "import", "simulator")

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}

# Every BingX candle interval: the fixed-length ones above plus the calendar month.
CANDLE_INTERVALS: tuple[str, ...] = (*INTERVAL_MS, "1M")

CANDLE_SCHEMA: dict[str, pl.DataType] = {
    "instrument": pl.String(),
    "interval": pl.String(),
    "open_time": pl.Datetime("us", "UTC"),
    "open": pl.Float64(),
    "high": pl.Float64(),
    "low": pl.Float64(),
    "close": pl.Float64(),
    "volume": pl.Float64(),
    "source": pl.String(),
}
CANDLE_KEY = ("instrument", "interval", "open_time")


def empty_candles() -> pl.DataFrame:
    """Return an empty frame with the canonical candle schema."""
    return pl.DataFrame(schema=CANDLE_SCHEMA)


def conform_candles(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast a frame to the canonical candle schema, sorted by time.

    Args:
        frame: Candles with at least the canonical columns (extra columns are dropped).

    Returns:
        The frame with canonical column order and types, sorted by instrument, interval, time.

    Raises:
        ValueError: If a canonical column is missing or ``source`` holds an unknown value.
    """
    missing = [c for c in CANDLE_SCHEMA if c not in frame.columns]
    if missing:
        raise ValueError(f"candle frame lacks column(s) {missing}")
    out = frame.select([pl.col(c).cast(t) for c, t in CANDLE_SCHEMA.items()])
    bad = out.filter(~pl.col("source").is_in(SOURCES))["source"].unique().to_list()
    if bad:
        raise ValueError(f"unknown candle source(s) {bad}; expected one of {SOURCES}")
    return out.sort(list(CANDLE_KEY))
