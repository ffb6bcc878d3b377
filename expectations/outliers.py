"""Return outliers: bars whose move from the previous close exceeds a per-interval threshold.

A bar's move is the largest of ``|log(high / prev_close)|``, ``|log(low / prev_close)|`` and
``|log(close / prev_close)|`` (the bar's own open stands in for the first bar of a series), so
a wick that reverts within the bar is caught as well as a jump. Outliers are flagged with their
open times, never dropped: a 17% crypto-only wick on a gold token is real market data that a
model must either see or have explicitly masked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import polars as pl

from goldrl_dagster.lib.config import load_settings
from goldrl_dagster.lib.market.candles import CANDLE_SCHEMA, INTERVAL_MS

if TYPE_CHECKING:  # GX loads inside the suite functions: the importer uses only bar_moves
    import great_expectations as gx

    from expectations.candles import SuiteResult

SUITE_NAME = "candle_returns"
MOVE_COLUMN = "max_abs_log_return"
THRESHOLDS_ENV = "GOLDRL_RETURN_OUTLIER_THRESHOLDS"
# How many outlier timestamps a report lists; the count is always exact.
MAX_LISTED = 50

# |log return| per bar above which a gold bar is suspicious. Gold rarely moves more than 1-2%
# in an hour; the thresholds sit far above the 99.99th percentile of real PAXG bars so a flag
# means a real event (or corruption), not noise.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "1m": 0.03, "3m": 0.035, "5m": 0.04, "15m": 0.05, "30m": 0.06, "1h": 0.07, "2h": 0.08,
    "4h": 0.09, "6h": 0.10, "8h": 0.10, "12h": 0.12, "1d": 0.15, "3d": 0.20, "1w": 0.25,
}  # fmt: skip


@dataclass(frozen=True)
class ReturnOutlier:
    """One flagged bar.

    Attributes:
        instrument: Exchange symbol.
        open_time: Bar open time, ISO 8601 UTC.
        move: The bar's largest ``|log return|`` from the previous close.
        reference_close: The previous close (or the bar's open for a series' first bar).
        high: The bar's high.
        low: The bar's low.
    """

    instrument: str
    open_time: str
    move: float
    reference_close: float
    high: float
    low: float


@dataclass(frozen=True)
class ReturnOutlierReport:
    """Outcome of the return-outlier suite.

    Attributes:
        result: The suite summary (``success`` is False when any bar is an outlier).
        threshold: The ``|log return|`` threshold applied.
        outliers: The flagged bars in time order, at most ``MAX_LISTED``.
        outlier_count: How many bars were flagged in total.
    """

    result: SuiteResult
    threshold: float
    outliers: tuple[ReturnOutlier, ...]
    outlier_count: int


def return_threshold(interval: str, overrides: Mapping[str, float] | None = None) -> float:
    """Return the outlier threshold of an interval.

    Args:
        interval: Bar interval, e.g. ``5m``.
        overrides: Per-interval thresholds replacing the defaults; by default the JSON object in
            ``GOLDRL_RETURN_OUTLIER_THRESHOLDS`` (e.g. ``{"1m": 0.02}``), read and validated by
            :func:`~goldrl_dagster.lib.config.load_settings`.

    Raises:
        ValueError: If the interval is unknown or a threshold is not a positive number
            (a ``SettingsError`` naming the variable when the environment's value is bad).
    """
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {list(INTERVAL_MS)}")
    if overrides is None:
        overrides = dict(load_settings().return_outlier_thresholds)
    value = overrides.get(interval, DEFAULT_THRESHOLDS[interval])
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"return-outlier threshold for {interval} must be a finite number > 0, got {value!r}"
        )
    return float(value)


def return_outliers_suite() -> gx.ExpectationSuite:
    """Build the suite: every bar's move at most the ``threshold`` suite parameter."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from expectations.engine import gx_context

    gx_context()
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column=MOVE_COLUMN, min_value=0, max_value={"$PARAMETER": "threshold"}
        )
    )
    return suite


@lru_cache(maxsize=1)
def _suite() -> gx.ExpectationSuite:
    return return_outliers_suite()


def bar_moves(candles: pl.DataFrame) -> pl.DataFrame:
    """Add ``reference_close`` and the bar's move (``max_abs_log_return``) per series.

    Args:
        candles: Canonical candles sorted by time within each (instrument, interval).

    Returns:
        The frame with the two extra columns.
    """
    series = ["instrument", "interval"]
    reference = pl.col("close").shift(1).over(series).fill_null(pl.col("open"))
    frame = candles.with_columns(reference.alias("reference_close"))
    moves = [(pl.col(c) / pl.col("reference_close")).log().abs() for c in ("high", "low", "close")]
    return frame.with_columns(pl.max_horizontal(moves).alias(MOVE_COLUMN))


def validate_returns(
    candles: pl.DataFrame, interval: str, threshold: float | None = None
) -> ReturnOutlierReport:
    """Flag bars whose move exceeds the threshold, with their open times.

    Args:
        candles: Canonical candles of one interval (any number of instruments).
        interval: Their bar interval (selects the default threshold).
        threshold: ``|log return|`` threshold; defaults to :func:`return_threshold`.

    Returns:
        The report; an empty frame passes (there is nothing to flag).

    Raises:
        ValueError: If a canonical column is missing or the threshold is not positive.
    """
    from expectations.candles import ExpectationFailure, SuiteResult
    from expectations.engine import raise_if_errored, run_suite

    missing = [c for c in CANDLE_SCHEMA if c not in candles.columns]
    if missing:
        raise ValueError(f"candle frame lacks column(s) {missing}")
    limit = return_threshold(interval) if threshold is None else float(threshold)
    if limit <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    frame = bar_moves(candles.select(list(CANDLE_SCHEMA)))
    outcome = run_suite(
        _suite(),
        frame.select("open_time", MOVE_COLUMN).to_pandas(),
        parameters={"threshold": limit},
        result_format={"result_format": "BASIC"},
    )
    (item,) = outcome.results
    raise_if_errored(item)
    listed = listed_outliers(frame.filter(pl.col(MOVE_COLUMN) > limit))
    count = int(item.result.get("unexpected_count") or 0)
    failures = (
        ()
        if item.success
        else (
            ExpectationFailure(
                expectation=item.expectation_config.type,
                column=MOVE_COLUMN,
                unexpected_count=count,
                sample=[o.open_time for o in listed],
            ),
        )
    )
    result = SuiteResult(SUITE_NAME, bool(item.success), 1, int(bool(item.success)), failures)
    return ReturnOutlierReport(result, limit, listed, count)


def listed_outliers(flagged: pl.DataFrame) -> tuple[ReturnOutlier, ...]:
    """The first ``MAX_LISTED`` flagged bars as records.

    Args:
        flagged: Bars of :func:`bar_moves` whose move is over the threshold.

    Returns:
        One :class:`ReturnOutlier` per listed bar, in the frame's order.
    """
    return tuple(
        ReturnOutlier(
            instrument=row["instrument"],
            open_time=row["open_time"].isoformat(),
            move=float(row[MOVE_COLUMN]),
            reference_close=float(row["reference_close"]),
            high=float(row["high"]),
            low=float(row["low"]),
        )
        for row in flagged.head(MAX_LISTED).iter_rows(named=True)
    )
