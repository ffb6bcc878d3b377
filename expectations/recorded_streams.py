"""Great Expectations suites for what the streaming recorder stored (``stream_*`` tables).

Three suites, one per question an operator asks of the recorded streams, each judging a frame
read by ``goldrl_dagster.lib.recorder.quality``:

* ``recorded_stream_freshness``: every stream of a running recorder's symbols (trades, books,
  tickers, mark prices, book tickers) received a row within ``max_age_seconds``;
* ``recorded_incr_depth_sequence``: every ``incrDepth`` book's ``lastUpdateId`` is above the
  previous one (``id_step > 0``), and every hole (``id_step > 1``) is explained by a recorded
  ``sequence_skip`` or ``disconnect`` gap;
* ``recorded_book_sanity``: best bid and ask positive, and best bid < best ask
  (``spread > 0``) in every stored book and book ticker.

Failures sample the offending rows as ``SYMBOL@channel time`` (``SYMBOL@stream`` for
freshness). An empty frame passes: no rows in a window is the freshness suite's question.
"""

from __future__ import annotations

from functools import lru_cache

import great_expectations as gx
import great_expectations.expectations as gxe
import polars as pl

from expectations.candles import SAMPLE_SIZE, SuiteResult, summarise
from expectations.engine import gx_context, run_suite

FRESHNESS_SUITE = "recorded_stream_freshness"
SEQUENCE_SUITE = "recorded_incr_depth_sequence"
BOOK_SUITE = "recorded_book_sanity"
SPREAD_COLUMN = "spread"
UNEXPLAINED_COLUMN = "unexplained_hole"
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}


def freshness_suite() -> gx.ExpectationSuite:
    """Build the freshness suite (threshold: suite parameter ``max_age_seconds``).

    Returns:
        A new, unsaved suite.
    """
    suite = gx.ExpectationSuite(name=FRESHNESS_SUITE)
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="age_seconds"))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(
            column="age_seconds", max_value={"$PARAMETER": "max_age_seconds"}
        )
    )
    return suite


def sequence_suite() -> gx.ExpectationSuite:
    """Build the ``incrDepth`` sequence suite.

    Returns:
        A new, unsaved suite.
    """
    suite = gx.ExpectationSuite(name=SEQUENCE_SUITE)
    for column in ("symbol", "time", "update_id"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["symbol", "update_id"]))
    # A symbol's first book has no predecessor (null step, skipped by column-map expectations).
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="id_step", min_value=0, strict_min=True)
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeInSet(column=UNEXPLAINED_COLUMN, value_set=[False])
    )
    return suite


def book_suite() -> gx.ExpectationSuite:
    """Build the book sanity suite.

    Returns:
        A new, unsaved suite.
    """
    suite = gx.ExpectationSuite(name=BOOK_SUITE)
    for column in ("symbol", "channel", "time"):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=column))
    # An empty side stores a null best price: not judged (column-map expectations skip nulls).
    for column in ("best_bid", "best_ask", SPREAD_COLUMN):
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True)
        )
    return suite


@lru_cache(maxsize=1)
def _suites() -> dict[str, gx.ExpectationSuite]:
    gx_context()  # GX builds expectations only inside an active context
    return {
        FRESHNESS_SUITE: freshness_suite(),
        SEQUENCE_SUITE: sequence_suite(),
        BOOK_SUITE: book_suite(),
    }


def _need(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} frame lacks column(s) {missing}")


def _labels(frame: pl.DataFrame, channel: str | pl.Expr) -> list[str]:
    channel_expr = pl.lit(channel) if isinstance(channel, str) else channel
    return frame.select(
        pl.format(
            "{}@{} {}",
            pl.col("symbol").fill_null("null"),
            channel_expr.fill_null("null"),
            pl.col("time").dt.to_string("%Y-%m-%dT%H:%M:%S%.3f%:z").fill_null("null"),
        )
    ).to_series().to_list()


def validate_stream_freshness(ages: pl.DataFrame, max_age_seconds: float) -> SuiteResult:
    """Validate stream ages (``lib.recorder.quality.stream_ages``).

    Args:
        ages: ``subject`` and ``age_seconds`` per (symbol, stream).
        max_age_seconds: The oldest acceptable newest row.

    Returns:
        The summary; a failure samples the stale ``SYMBOL@stream`` subjects.

    Raises:
        ValueError: If a column is missing or ``max_age_seconds`` is not positive.
    """
    _need(ages, ("subject", "age_seconds"), "stream ages")
    if not max_age_seconds > 0:
        raise ValueError(f"max_age_seconds must be positive, got {max_age_seconds}")
    suite = _suites()[FRESHNESS_SUITE]
    outcome = run_suite(
        suite,
        ages.select("subject", "age_seconds").to_pandas(),
        parameters={"max_age_seconds": max_age_seconds},
        result_format=_RESULT_FORMAT,
    )
    return summarise(FRESHNESS_SUITE, suite, outcome, ages["subject"].to_list())


def validate_incr_depth_sequence(books: pl.DataFrame) -> SuiteResult:
    """Validate ``incrDepth`` books with their steps (``lib.recorder.quality.incr_depth_sequence``).

    Args:
        books: ``symbol``, ``time``, ``update_id``, ``id_step`` and ``hole_explained``.

    Returns:
        The summary; failures sample ``SYMBOL@incrDepth time`` of the book after the fault.

    Raises:
        ValueError: If a column is missing.
    """
    _need(books, ("symbol", "time", "update_id", "id_step", "hole_explained"), "incrDepth")
    frame = books.select(
        "symbol", "time", "update_id", "id_step",
        # A step above 1 without a recorded gap; null (first book, step of 1) is not judged.
        pl.when(pl.col("id_step") > 1).then(pl.col("hole_explained").not_().fill_null(True))
        .otherwise(None).alias(UNEXPLAINED_COLUMN),
    )  # fmt: skip
    suite = _suites()[SEQUENCE_SUITE]
    outcome = run_suite(suite, frame.to_pandas(), result_format=_RESULT_FORMAT)
    return summarise(SEQUENCE_SUITE, suite, outcome, _labels(frame, "incrDepth"))


def validate_recorded_books(books: pl.DataFrame) -> SuiteResult:
    """Validate stored books and book tickers (``lib.recorder.quality.recorded_books``).

    Args:
        books: ``symbol``, ``channel``, ``time``, ``best_bid`` and ``best_ask``.

    Returns:
        The summary; failures sample ``SYMBOL@channel time`` of the offending books.

    Raises:
        ValueError: If a column is missing.
    """
    _need(books, ("symbol", "channel", "time", "best_bid", "best_ask"), "book")
    frame = books.select(
        "symbol", "channel", "time", "best_bid", "best_ask",
        (pl.col("best_ask") - pl.col("best_bid")).alias(SPREAD_COLUMN),
    )  # fmt: skip
    suite = _suites()[BOOK_SUITE]
    outcome = run_suite(suite, frame.to_pandas(), result_format=_RESULT_FORMAT)
    return summarise(BOOK_SUITE, suite, outcome, _labels(frame, pl.col("channel")))
