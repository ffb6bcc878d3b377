"""Great Expectations suite for stored funding settlements (``funding_rates`` rows).

What every consumer of funding assumes: no nulls where a settlement needs a value, a rate
within plausible bounds, an interval BingX uses (1, 2, 4 or 8 h) with a known provenance, a
settlement time on its own interval's UTC grid (8 h: 00:00, 08:00, 16:00), and one settlement
per instrument and time, strictly increasing. The grid and ordering checks are column
expectations on derived columns (``grid_offset_ms``, ``spacing_ms``), so a failure names the
settlement at fault. Rows whose interval is unknown are not judged on the grid (nothing to
judge against); they are reported by the funding asset, never assumed.

Mark-price candles are candles: their suite is the candle suite (``expectations.candles``)
plus the staleness check (``expectations.freshness``).
"""

from __future__ import annotations

from functools import lru_cache

import great_expectations as gx
import great_expectations.expectations as gxe
import polars as pl

from expectations.candles import (
    NO_ROWS,
    SAMPLE_SIZE,
    ExpectationFailure,
    SuiteResult,
    summarise,
)
from expectations.engine import gx_context, run_suite
from goldrl_dagster.lib.market.candles import SOURCES
from goldrl_dagster.lib.market.funding_intervals import FUNDING_INTERVAL_HOURS, INTERVAL_SOURCES

SUITE_NAME = "funding"
GRID_COLUMN = "grid_offset_ms"
SPACING_COLUMN = "spacing_ms"
# BingX caps gold funding far below this; a rate beyond it per period is a unit or parse error.
DEFAULT_MAX_ABS_RATE = 0.01
_COLUMNS = (
    "instrument", "funding_time", "funding_rate", "funding_interval_hours",
    "funding_interval_source", "source",
)  # fmt: skip


def funding_suite() -> gx.ExpectationSuite:
    """Build the ``funding`` suite (rate bound: suite parameter ``max_abs_rate``).

    Returns:
        A new, unsaved suite named ``funding``.
    """
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for column in ("instrument", "funding_time", "funding_rate", "source"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="funding_rate",
            min_value={"$PARAMETER": "min_rate"},
            max_value={"$PARAMETER": "max_abs_rate"},
        )
    )
    # Column-map expectations skip nulls: an unknown interval is not judged here.
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(
            column="funding_interval_hours", value_set=list(FUNDING_INTERVAL_HOURS)
        )
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(
            column="funding_interval_source", value_set=list(INTERVAL_SOURCES)
        )
    )
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES)))
    suite.add_expectation(
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["instrument", "funding_time"])
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column=GRID_COLUMN, min_value=0, max_value=0)
    )
    # The first settlement of an instrument has no predecessor (null, skipped); a repeat gives
    # 0 and one out of order a negative spacing.
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column=SPACING_COLUMN, min_value=0, strict_min=True)
    )
    return suite


@lru_cache(maxsize=1)
def _suite() -> gx.ExpectationSuite:
    gx_context()  # GX builds expectations only inside an active context
    return funding_suite()


def _prepared(funding: pl.DataFrame) -> pl.DataFrame:
    ms = pl.col("funding_time").dt.epoch("ms")
    step = pl.col("funding_interval_hours").cast(pl.Int64) * 3_600_000
    return funding.select(list(_COLUMNS)).with_columns(
        (ms % step).cast(pl.Float64).alias(GRID_COLUMN),
        ms.diff().over("instrument").cast(pl.Float64).alias(SPACING_COLUMN),
    )


def validate_funding(
    funding: pl.DataFrame, max_abs_rate: float = DEFAULT_MAX_ABS_RATE
) -> SuiteResult:
    """Validate funding rows, in frame order, against the ``funding`` suite.

    An empty frame does not pass (``"no rows"``): a day that settled nothing is a data problem.

    Args:
        funding: Rows with the ``funding_rates`` columns (extra columns are ignored).
        max_abs_rate: Largest plausible absolute rate per settlement.

    Returns:
        The validation summary; each failure samples the settlement times at fault.

    Raises:
        ValueError: If a column is missing or ``max_abs_rate`` is not positive.
    """
    missing = [c for c in _COLUMNS if c not in funding.columns]
    if missing:
        raise ValueError(f"funding frame lacks column(s) {missing}")
    if not max_abs_rate > 0:
        raise ValueError(f"max_abs_rate must be positive, got {max_abs_rate}")
    if funding.height == 0:
        failure = ExpectationFailure(NO_ROWS, None, 0, [])
        return SuiteResult(SUITE_NAME, False, 0, 0, (failure,))
    frame = _prepared(funding)
    times = ["null" if t is None else t.isoformat() for t in frame["funding_time"].to_list()]
    suite = _suite()
    outcome = run_suite(
        suite,
        frame.to_pandas(),
        parameters={"min_rate": -max_abs_rate, "max_abs_rate": max_abs_rate},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE},
    )
    return summarise(SUITE_NAME, suite, outcome, times)
