"""Freshness: how long ago the latest stored candle of each series closed.

Two expectations on one row per series: the age is within the ERROR threshold (data is stale
enough to stop trusting it) and within the WARN threshold (an operator should look). Ages are
measured on the venue's clock, so the simulator and the real exchange are judged alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import great_expectations as gx
import great_expectations.expectations as gxe
import polars as pl

from expectations.engine import gx_context, raise_if_errored, run_suite

SUITE_NAME = "candle_freshness"
AGE_COLUMN = "age_seconds"
DEFAULT_WARN_AFTER = timedelta(hours=2)
# A daily-partitioned backfill runs at least once a day; more than a day and a bit behind is
# an outage, not a schedule.
DEFAULT_ERROR_AFTER = timedelta(hours=26)


@dataclass(frozen=True)
class SeriesFreshness:
    """Freshness of one series.

    Attributes:
        instrument: Exchange symbol.
        latest_open_time: Open time of the newest stored bar (None: nothing stored).
        age: Time since that bar closed (None: nothing stored).
        level: ``ok``, ``warn`` or ``error``.
    """

    instrument: str
    latest_open_time: datetime | None
    age: timedelta | None
    level: str


@dataclass(frozen=True)
class FreshnessReport:
    """Outcome of the freshness suite.

    Attributes:
        level: The worst level over every series: ``ok``, ``warn`` or ``error``.
        series: Per-series freshness, in input order.
        warn_after: WARN threshold applied.
        error_after: ERROR threshold applied.
        now: The venue time the ages are measured at.
    """

    level: str
    series: tuple[SeriesFreshness, ...]
    warn_after: timedelta
    error_after: timedelta
    now: datetime


def freshness_suite() -> gx.ExpectationSuite:
    """Build the suite: age within ``error_after`` and ``warn_after``; missing data warns."""
    gx_context()
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for level in ("error", "warn"):
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(
                column=AGE_COLUMN,
                max_value={"$PARAMETER": f"{level}_after"},
                meta={"level": level},
            )
        )
    suite.add_expectation(
        gxe.ExpectColumnValuesToNotBeNull(column=AGE_COLUMN, meta={"level": "warn"})
    )
    return suite


@lru_cache(maxsize=1)
def _suite() -> gx.ExpectationSuite:
    return freshness_suite()


def validate_freshness(
    latest: dict[str, datetime | None],
    interval_ms: int,
    now: datetime,
    *,
    warn_after: timedelta = DEFAULT_WARN_AFTER,
    error_after: timedelta = DEFAULT_ERROR_AFTER,
) -> FreshnessReport:
    """Judge the age of the newest bar of each series.

    Args:
        latest: Newest stored open time per instrument (None when nothing is stored yet: a
            WARN, since a first backfill may simply not have reached the instrument).
        interval_ms: Bar interval; a bar's age counts from its close.
        now: Current venue time (UTC).
        warn_after: Age above which the level is ``warn``.
        error_after: Age above which the level is ``error``.

    Returns:
        The report.

    Raises:
        ValueError: If no series is given or the thresholds are inverted.
    """
    if not latest:
        raise ValueError("freshness needs at least one series")
    if not timedelta(0) < warn_after <= error_after:
        raise ValueError(
            f"freshness thresholds must satisfy 0 < warn ({warn_after}) <= error ({error_after})"
        )
    step = timedelta(milliseconds=interval_ms)
    ages = {name: (now - (t + step)) if t is not None else None for name, t in latest.items()}
    frame = pl.DataFrame(
        {
            "instrument": list(ages),
            AGE_COLUMN: [a.total_seconds() if a is not None else None for a in ages.values()],
        },
        schema={"instrument": pl.String, AGE_COLUMN: pl.Float64},
    )
    outcome = run_suite(
        _suite(),
        frame.to_pandas(),
        parameters={
            "warn_after": warn_after.total_seconds(),
            "error_after": error_after.total_seconds(),
        },
        result_format={"result_format": "COMPLETE"},
    )
    levels = dict.fromkeys(ages, "ok")
    rank = {"ok": 0, "warn": 1, "error": 2}
    for item in outcome.results:
        raise_if_errored(item)
        if item.success:
            continue
        level = item.expectation_config.meta["level"]
        names = list(ages)
        for row in item.result.get("unexpected_index_list") or []:
            name = names[int(row)]
            if rank[level] > rank[levels[name]]:
                levels[name] = level
    series = tuple(SeriesFreshness(name, latest[name], ages[name], levels[name]) for name in latest)
    worst = max(levels.values(), key=rank.__getitem__)
    return FreshnessReport(worst, series, warn_after, error_after, now)
