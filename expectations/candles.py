"""Great Expectations suite for the canonical candle frame.

The suite checks what every consumer of candles silently assumes: OHLC consistency, positive
prices, non-negative volume, no nulls, one bar per (instrument, interval, open time) and a
gap-free, strictly increasing time axis. Contiguity is expressed as an ordinary GX column
expectation on a derived ``gap_ms`` column (the distance to the previous bar of the same
instrument and interval), so the report names the bar that follows a hole.

GX is slow to import and to build a context, so the ephemeral context, the pandas data source
and the suite are built once per process and reused; the bar interval reaches the suite as a
suite parameter rather than by rebuilding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
import polars as pl
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
)

from expectations.engine import column_of, failed_results, gx_context, run_suite
from goldrl_dagster.lib.market.candles import CANDLE_SCHEMA, INTERVAL_MS, SOURCES
from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar
from goldrl_dagster.lib.market.gaps import find_gaps

SUITE_NAME = "candles"
GAP_COLUMN = "gap_ms"
NO_ROWS = "no rows"
PRICE_COLUMNS = ("open", "high", "low", "close")
# How many offending open times a failure carries; enough to find the problem, small enough
# for Dagster metadata.
SAMPLE_SIZE = 5


@dataclass(frozen=True)
class ExpectationFailure:
    """One expectation of the suite that the frame violated.

    Attributes:
        expectation: GX expectation type, e.g. ``expect_column_values_to_be_unique``, or
            ``"no rows"`` for an empty frame.
        column: The column checked; ``"a,b"`` for pair/compound expectations; None when the
            check is about the whole table.
        unexpected_count: Number of offending rows.
        sample: Open times (ISO 8601, UTC) of up to ``SAMPLE_SIZE`` offending rows; ``"null"``
            where the open time itself is missing.
    """

    expectation: str
    column: str | None
    unexpected_count: int
    sample: list[str]


@dataclass(frozen=True)
class SuiteResult:
    """Outcome of validating a frame against a suite.

    Attributes:
        suite: Name of the suite.
        success: True when every expectation held.
        evaluated: Number of expectations evaluated.
        successful: Number of expectations that held.
        failures: The violated expectations, in suite order.
    """

    suite: str
    success: bool
    evaluated: int
    successful: int
    failures: tuple[ExpectationFailure, ...]

    def to_metadata(self) -> dict[str, Any]:
        """Return a JSON-ready summary (e.g. for Dagster asset-check metadata).

        Returns:
            A mapping of plain str/int/bool/list values.
        """
        return {
            "suite": self.suite,
            "success": self.success,
            "evaluated": self.evaluated,
            "successful": self.successful,
            "failures": [
                {
                    "expectation": f.expectation,
                    "column": f.column,
                    "unexpected_count": f.unexpected_count,
                    "sample": list(f.sample),
                }
                for f in self.failures
            ],
        }


def candles_suite() -> gx.ExpectationSuite:
    """Build the ``candles`` expectation suite.

    The contiguity and interval-label expectations take the suite parameters ``interval_ms``
    and ``interval_names`` (supplied by :func:`validate_candles`), so one suite serves every bar
    interval. It also expects the derived column ``gap_ms`` that :func:`validate_candles` adds.

    Returns:
        A new, unsaved suite named ``candles``.
    """
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for column in CANDLE_SCHEMA:
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    # Nulls are reported by the not-null expectations above, not a second time here.
    for a, b in (("high", "open"), ("high", "close"), ("high", "low"), ("open", "low")):
        suite.add_expectation(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=a, column_B=b, or_equal=True, ignore_row_if="either_value_is_missing"
            )
        )
    suite.add_expectation(
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="close", column_B="low", or_equal=True, ignore_row_if="either_value_is_missing"
        )
    )
    for column in PRICE_COLUMNS:
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True)
        )
    suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="source", value_set=list(SOURCES)))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(
            column="interval", value_set={"$PARAMETER": "interval_names"}
        )
    )
    suite.add_expectation(
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["instrument", "interval", "open_time"])
    )
    # The first bar of each series has no predecessor: its gap is null, which column-map
    # expectations skip; a duplicate gives 0 and an out-of-order bar a negative gap, so this
    # also enforces strictly increasing open times.
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column=GAP_COLUMN,
            min_value={"$PARAMETER": "interval_ms"},
            max_value={"$PARAMETER": "interval_ms"},
        )
    )
    return suite


@lru_cache(maxsize=1)
def _suite() -> gx.ExpectationSuite:
    gx_context()  # GX builds expectations only inside an active context
    return candles_suite()


def _prepared(candles: pl.DataFrame, interval_ms: int, closures: ClosureCalendar) -> pl.DataFrame:
    gap = pl.col("open_time").dt.epoch("ms").diff().over(["instrument", "interval"])
    frame = candles.select(list(CANDLE_SCHEMA)).with_columns(gap.cast(pl.Float64).alias(GAP_COLUMN))
    if closures == NO_CLOSURES:
        return frame
    # A hole whose missing bars all fall in a known venue closure is not a contiguity defect:
    # the bar after it counts as adjacent.
    holes = frame.with_row_index("row").filter(pl.col(GAP_COLUMN) > interval_ms)
    excused = []
    for row, gap_ms, open_time in holes.select("row", GAP_COLUMN, "open_time").iter_rows():
        start_ms = int(open_time.timestamp() * 1000) - int(gap_ms)
        if not find_gaps([start_ms, start_ms + int(gap_ms)], interval_ms, closures):
            excused.append(row)
    if not excused:
        return frame
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()).is_in(excused))
        .then(float(interval_ms))
        .otherwise(pl.col(GAP_COLUMN))
        .alias(GAP_COLUMN)
    )


def _sample(open_times: list[str], result: dict[str, Any]) -> list[str]:
    rows = result.get("partial_unexpected_index_list") or []
    sample: list[str] = []
    for row in rows:
        # The batch is indexed 0..n-1 (RangeIndex), so GX's index is the row number.
        label = open_times[int(row)]
        if label not in sample:
            sample.append(label)
    return sample[:SAMPLE_SIZE]


def validate_candles(
    candles: pl.DataFrame,
    interval_ms: int = 60_000,
    closures: ClosureCalendar = NO_CLOSURES,
) -> SuiteResult:
    """Validate a canonical candle frame against the ``candles`` suite.

    Rows are checked in frame order (``conform_candles`` sorts them), and contiguity is judged
    per (instrument, interval) series. An empty frame does not pass: it yields
    ``success=False`` with a single ``"no rows"`` failure, because a partition that produced no
    bars is a data problem, not vacuous quality.

    Args:
        candles: Frame with the canonical candle columns (extra columns are ignored).
        interval_ms: Expected spacing of consecutive bars in milliseconds; the frame's
            ``interval`` labels must denote this spacing.
        closures: Known venue closures of the frame's instrument; a hole that lies entirely
            in a closure does not break contiguity.

    Returns:
        The validation summary, with the open times of offending rows in each failure.

    Raises:
        ValueError: If a canonical column is missing or ``interval_ms`` is not a known interval.
    """
    missing = [c for c in CANDLE_SCHEMA if c not in candles.columns]
    if missing:
        raise ValueError(f"candle frame lacks column(s) {missing}")
    interval_names = [name for name, ms in INTERVAL_MS.items() if ms == interval_ms]
    if not interval_names:
        raise ValueError(
            f"interval_ms={interval_ms} is not a known bar interval; expected one of "
            f"{sorted(set(INTERVAL_MS.values()))}"
        )
    if candles.height == 0:
        failure = ExpectationFailure(
            expectation=NO_ROWS, column=None, unexpected_count=0, sample=[]
        )
        return SuiteResult(SUITE_NAME, False, 0, 0, (failure,))

    frame = _prepared(candles, interval_ms, closures)
    open_times = ["null" if t is None else t.isoformat() for t in frame["open_time"].to_list()]
    parameters: dict[str, Any] = {
        "interval_ms": float(interval_ms),
        "interval_names": interval_names,
    }
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
    suite = _suite()
    outcome = run_suite(
        suite, frame.to_pandas(), parameters=parameters, result_format=result_format
    )
    return summarise(SUITE_NAME, suite, outcome, open_times)


def summarise(
    name: str,
    suite: gx.ExpectationSuite,
    outcome: ExpectationSuiteValidationResult,
    row_labels: list[str],
) -> SuiteResult:
    """Summarise a validation of ``suite`` in suite order, naming offending rows by label.

    Args:
        name: The suite's name.
        suite: The suite validated.
        outcome: Its ``run_suite`` result (GX row indexes are row numbers).
        row_labels: One label per row of the batch (e.g. ISO open times).

    Returns:
        The summary.
    """
    failures = [
        ExpectationFailure(
            expectation=item.expectation_config.type,
            column=column_of(item.expectation_config.kwargs),
            unexpected_count=int(item.result.get("unexpected_count") or 0),
            sample=_sample(row_labels, item.result),
        )
        for item in failed_results(suite, outcome)
    ]
    evaluated = len(outcome.results)
    return SuiteResult(
        suite=name,
        success=not failures,
        evaluated=evaluated,
        successful=evaluated - len(failures),
        failures=tuple(failures),
    )
