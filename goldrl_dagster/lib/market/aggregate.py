"""Higher-interval candles aggregated from the 1m base, and their cross-check with the exchange.

Bucket alignment (all UTC):

* ``3m`` … ``1d``: aligned to the Unix epoch. Each of these lengths divides a day, so every
  bucket lies inside one UTC day and ``1d`` buckets are calendar days.
* ``3d``: aligned to the Unix epoch (1970-01-01 00:00), i.e. ``open_time % 3 days == 0``, the
  convention of Binance-style venues that BingX follows for fixed-length bars.
* ``1w``: weeks start Monday 00:00 UTC (BingX's week), i.e. the epoch shifted by 4 days
  (1970-01-01 was a Thursday).
* ``1M``: calendar months, from the 1st 00:00 UTC to the next 1st.

A bucket is produced only when it is complete: every constituent bar of the input interval is
present. Incomplete buckets are returned separately so a caller can report them, never emitted
as if they were whole.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from goldrl_dagster.lib.market.candles import CANDLE_SCHEMA, INTERVAL_MS, SOURCES, conform_candles

MONTH = "1M"
INTERVAL_MISMATCH = "interval_mismatch"
INCOMPLETE_BUCKET = "incomplete_bucket"
# Every BingX interval above the 1m base, in ascending length.
AGGREGATE_INTERVALS: tuple[str, ...] = (
    "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", MONTH,
)  # fmt: skip
DAY_MS = 86_400_000
# 1970-01-05 00:00 UTC, the first Monday after the epoch.
_WEEK_OFFSET_MS = 4 * DAY_MS
# When one bucket mixes sources, the label of the least exchange-authoritative one wins, so a
# bar built partly from simulated or imported data is never passed off as exchange data.
_SOURCE_TAINT = ("simulator", "import", "bingx_ws", "bingx_rest")
assert set(_SOURCE_TAINT) == set(SOURCES)

INCOMPLETE_SCHEMA: dict[str, pl.DataType] = {
    "instrument": pl.String(),
    "interval": pl.String(),
    "open_time": pl.Datetime("us", "UTC"),
    "close_time": pl.Datetime("us", "UTC"),
    "expected_bars": pl.Int64(),
    "present_bars": pl.Int64(),
}


def _check_interval(interval: str) -> None:
    if interval != MONTH and interval not in INTERVAL_MS:
        raise ValueError(
            f"unknown interval {interval!r}; expected one of {['1m', *AGGREGATE_INTERVALS]}"
        )


def _offset_ms(interval: str) -> int:
    return _WEEK_OFFSET_MS if interval == "1w" else 0


def bucket_start(at: datetime, interval: str) -> datetime:
    """Return the open time of the ``interval`` bucket containing ``at`` (aware UTC).

    Raises:
        ValueError: If the interval is unknown or ``at`` is naive.
    """
    _check_interval(interval)
    if at.tzinfo is None:
        raise ValueError(f"time must be timezone-aware, got {at!r}")
    at = at.astimezone(UTC)
    if interval == MONTH:
        return datetime(at.year, at.month, 1, tzinfo=UTC)
    step, offset = INTERVAL_MS[interval], _offset_ms(interval)
    ms = math.floor(at.timestamp() * 1000)
    return datetime.fromtimestamp(((ms - offset) // step * step + offset) / 1000, tz=UTC)


def bucket_end(start: datetime, interval: str) -> datetime:
    """Return the close time (exclusive end) of the bucket opening at ``start``."""
    _check_interval(interval)
    if interval == MONTH:
        return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    return start + timedelta(milliseconds=INTERVAL_MS[interval])


def buckets_closing_in(interval: str, start: datetime, end: datetime) -> list[datetime]:
    """Open times of the buckets whose close time falls in ``(start, end]``.

    Used to decide which higher-interval bars a day's partition owns: a bar belongs to the day
    in which it closes, so each bar is built exactly once, when its last minute is in.
    """
    first = bucket_start(start, interval)
    out = []
    cursor = first
    while True:
        close = bucket_end(cursor, interval)
        if close > end:
            return out
        if close > start:
            out.append(cursor)
        cursor = close


def _bucket_expr(interval: str) -> pl.Expr:
    col = pl.col("open_time")
    if interval == MONTH:
        return col.dt.truncate("1mo")
    step_us, offset_us = INTERVAL_MS[interval] * 1000, _offset_ms(interval) * 1000
    epoch_us = col.dt.epoch("us")
    return ((epoch_us - offset_us) // step_us * step_us + offset_us).cast(pl.Datetime("us", "UTC"))


def _end_expr(interval: str) -> pl.Expr:
    if interval == MONTH:
        return pl.col("open_time").dt.offset_by("1mo")
    return pl.col("open_time") + pl.duration(milliseconds=INTERVAL_MS[interval])


def _check_nesting(base: str, target: str) -> None:
    if base == MONTH or base not in INTERVAL_MS:
        raise ValueError(f"cannot aggregate from {base!r}; the input must have a fixed length")
    base_ms = INTERVAL_MS[base]
    # Buckets nest only if the input length divides the target's length and its alignment
    # (months are whole days, so any input that divides a day tiles them).
    if target == MONTH:
        tiles = DAY_MS % base_ms == 0
    else:
        outer = INTERVAL_MS[target]
        tiles = outer > base_ms and outer % base_ms == 0 and _offset_ms(target) % base_ms == 0
    if not tiles:
        raise ValueError(f"{base} bars do not tile {target} buckets; aggregate from a finer one")


@dataclass(frozen=True)
class Aggregation:
    """Result of :func:`aggregate_candles`.

    Attributes:
        candles: Complete buckets, canonical candle frame with ``interval`` = the target.
        incomplete: Buckets with missing input bars (``INCOMPLETE_SCHEMA``), not in ``candles``.
    """

    candles: pl.DataFrame
    incomplete: pl.DataFrame


def aggregate_candles(frame: pl.DataFrame, interval: str) -> Aggregation:
    """Aggregate a canonical candle frame (one input interval) into ``interval`` buckets.

    Open is the first bar's open, close the last bar's close, high/low the extremes, volume the
    sum. ``source`` is inherited from the inputs (mixed inputs take the least authoritative
    label: simulator, then import, then bingx_ws, then bingx_rest).

    Args:
        frame: Canonical candles of one interval (usually ``1m``), any number of instruments.
        interval: Target interval (``3m`` … ``1d``, ``3d``, ``1w``, ``1M``).

    Returns:
        The complete buckets and the incomplete ones.

    Raises:
        ValueError: If the frame mixes intervals, holds duplicate open times, has bars off the
            input interval's grid, or the input interval does not tile the target.
    """
    _check_interval(interval)
    frame = conform_candles(frame)
    if frame.height == 0:
        return Aggregation(
            pl.DataFrame(schema=CANDLE_SCHEMA), pl.DataFrame(schema=INCOMPLETE_SCHEMA)
        )
    bases = frame["interval"].unique().to_list()
    if len(bases) != 1:
        raise ValueError(f"candle frame mixes intervals {sorted(bases)}; aggregate one at a time")
    base = bases[0]
    _check_nesting(base, interval)
    if frame.select("instrument", "open_time").is_duplicated().any():
        raise ValueError("candle frame holds duplicate (instrument, open_time) rows")
    base_us = INTERVAL_MS[base] * 1000
    off_grid = frame.filter(pl.col("open_time").dt.epoch("us") % base_us != 0)
    if off_grid.height:
        raise ValueError(
            f"{off_grid.height} {base} bar(s) open off the {base} grid, "
            f"first at {off_grid['open_time'][0]}"
        )
    taint = pl.Enum(_SOURCE_TAINT)
    grouped = (
        frame.sort("instrument", "open_time")
        .with_columns(_bucket_expr(interval).alias("bucket"))
        .group_by("instrument", "bucket", maintain_order=True)
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.col("source").cast(taint).min().cast(pl.String),
            pl.len().cast(pl.Int64).alias("present_bars"),
        )
        .rename({"bucket": "open_time"})
        .with_columns(pl.lit(interval).alias("interval"), _end_expr(interval).alias("close_time"))
        .with_columns(
            ((pl.col("close_time") - pl.col("open_time")).dt.total_microseconds() // base_us)
            .cast(pl.Int64)
            .alias("expected_bars")
        )
    )
    complete = grouped.filter(pl.col("present_bars") == pl.col("expected_bars"))
    incomplete = grouped.filter(pl.col("present_bars") != pl.col("expected_bars"))
    return Aggregation(
        candles=conform_candles(complete),
        incomplete=incomplete.select(list(INCOMPLETE_SCHEMA)).sort("instrument", "open_time"),
    )


@dataclass(frozen=True)
class CandleMismatch:
    """One field of one bar on which our aggregate and the exchange disagree.

    ``field`` is ``open``/``high``/``low``/``close``/``volume``, or ``missing_on_exchange`` /
    ``missing_here`` when only one side has the bar (then the values are None).
    """

    instrument: str
    interval: str
    open_time: datetime
    field: str
    ours: float | None
    theirs: float | None
    rel_diff: float | None


_FIELDS = ("open", "high", "low", "close", "volume")


def relative_difference(ours: float, theirs: float) -> float:
    """``|ours - theirs| / max(|ours|, |theirs|)``, 0 when both are 0."""
    scale = max(abs(ours), abs(theirs))
    return 0.0 if scale == 0 else abs(ours - theirs) / scale


def compare_candles(
    ours: pl.DataFrame, exchange: pl.DataFrame, rel_tolerance: float
) -> list[CandleMismatch]:
    """Compare our candles with the exchange's for the same buckets.

    Args:
        ours: Canonical candles we built.
        exchange: Canonical candles the exchange serves for the same instrument(s)/interval(s).
        rel_tolerance: Largest relative difference (see :func:`relative_difference`) accepted.

    Returns:
        Every disagreement beyond the tolerance, and every bar present on one side only, sorted
        by instrument, interval, open time and field.

    Raises:
        ValueError: If the tolerance is negative or not finite.
    """
    if not math.isfinite(rel_tolerance) or rel_tolerance < 0:
        raise ValueError(f"rel_tolerance must be a finite number >= 0, got {rel_tolerance}")
    key = ["instrument", "interval", "open_time"]
    a = conform_candles(ours).select(*key, *_FIELDS)
    b = conform_candles(exchange).select(*key, *_FIELDS)
    joined = a.join(b, on=key, how="full", suffix="_x", coalesce=True)
    out: list[CandleMismatch] = []
    for row in joined.iter_rows(named=True):
        ident = (row["instrument"], row["interval"], row["open_time"])
        if row["open"] is None or row["open_x"] is None:
            field = "missing_here" if row["open"] is None else "missing_on_exchange"
            out.append(CandleMismatch(*ident, field, None, None, None))
            continue
        for name in _FIELDS:
            diff = relative_difference(row[name], row[f"{name}_x"])
            if diff > rel_tolerance:
                out.append(CandleMismatch(*ident, name, row[name], row[f"{name}_x"], diff))
    return sorted(out, key=lambda m: (m.instrument, m.interval, m.open_time, m.field))


def mismatch_findings(mismatches: Sequence[CandleMismatch]) -> list[dict[str, Any]]:
    """Data-quality findings of kind ``interval_mismatch``: one per bar, all its fields.

    Args:
        mismatches: Output of :func:`compare_candles`.

    Returns:
        Finding dicts (``kind, instrument, interval, at, severity, detail``) in bar order, the
        detail mapping each disagreeing field to ``{ours, theirs, rel_diff}``.
    """
    by_bar: dict[tuple[str, str, datetime], dict[str, Any]] = defaultdict(dict)
    for m in mismatches:
        by_bar[(m.instrument, m.interval, m.open_time)][m.field] = {
            "ours": m.ours,
            "theirs": m.theirs,
            "rel_diff": m.rel_diff,
        }
    return [
        {
            "kind": INTERVAL_MISMATCH,
            "instrument": instrument,
            "interval": interval,
            "at": open_time,
            "severity": "warning",
            "detail": {"fields": fields},
        }
        for (instrument, interval, open_time), fields in sorted(by_bar.items())
    ]


def incomplete_findings(
    instrument: str,
    interval: str,
    open_times: Sequence[datetime],
    present_bars: Mapping[datetime, int],
    base_interval: str = "1m",
) -> list[dict[str, Any]]:
    """Data-quality findings of kind ``incomplete_bucket`` for closed buckets not built.

    Args:
        instrument: Exchange symbol.
        interval: The bucket interval.
        open_times: Open times of the buckets that could not be built.
        present_bars: Input bars found per bucket (absent: none at all).
        base_interval: Interval of the input bars.
    """
    return [
        {
            "kind": INCOMPLETE_BUCKET,
            "instrument": instrument,
            "interval": interval,
            "at": start,
            "severity": "warning",
            "detail": {
                "present_bars": int(present_bars.get(start, 0)),
                "close_time": bucket_end(start, interval).isoformat(),
                "base_interval": base_interval,
            },
        }
        for start in open_times
    ]
