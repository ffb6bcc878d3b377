"""The exchange's own higher-interval bars: where they stand next to the canonical candles.

BingX serves minute klines only so far back, its hourly and daily klines much further. goldrl
keeps the exchange's bars of a few intervals (``exchange_candles``) so history before the
reach of 1m can still be used, with two rules:

* where a bar aggregated from 1m exists (``candles``), it is canonical; the exchange's bar for
  the same bucket only cross-checks it, and a disagreement is an ``interval_mismatch`` finding;
* where no aggregated bar exists, the exchange's bar stands in, labelled ``origin = exchange``
  so a dataset's lineage says which bars were not built from minutes.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from goldrl_dagster.lib.market.aggregate import compare_candles, mismatch_findings
from goldrl_dagster.lib.market.candles import CANDLE_INTERVALS, CANDLE_SCHEMA, conform_candles

# Intervals fetched from the exchange by default: long enough to reach far back, short enough
# to train on.
EXCHANGE_BAR_INTERVALS: tuple[str, ...] = ("1h", "4h", "1d")
ORIGIN_CANONICAL = "canonical"
ORIGIN_EXCHANGE = "exchange"
FILLED_SCHEMA: dict[str, pl.DataType] = {**CANDLE_SCHEMA, "origin": pl.String()}


def check_exchange_intervals(intervals: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Validate the intervals to fetch from the exchange.

    Returns:
        The intervals, duplicates removed, in given order.

    Raises:
        ValueError: If the list is empty, names ``1m`` (the base is stored in ``candles``) or an
            interval BingX does not serve.
    """
    out = tuple(dict.fromkeys(intervals))
    bad = [i for i in out if i == "1m" or i not in CANDLE_INTERVALS]
    if not out or bad:
        raise ValueError(
            f"exchange bar intervals must be BingX intervals above 1m, got {list(intervals)}; "
            f"choose from {list(CANDLE_INTERVALS[1:])}"
        )
    return out


def overlap_findings(
    canonical: pl.DataFrame, exchange: pl.DataFrame, rel_tolerance: float
) -> list[dict[str, Any]]:
    """``interval_mismatch`` findings for buckets both sides have and disagree on.

    A bucket only one side has is not a finding here: an exchange bar without a canonical one is
    the fallback this table exists for, and a canonical bar the exchange no longer serves is
    beyond its history depth.

    Args:
        canonical: Canonical candles (aggregated from 1m) of one or more series.
        exchange: The exchange's bars for the same series.
        rel_tolerance: Largest relative difference accepted per field.

    Returns:
        Finding dicts as :func:`~goldrl_dagster.lib.market.aggregate.mismatch_findings` makes.
    """
    key = ["instrument", "interval", "open_time"]
    ours, theirs = conform_candles(canonical), conform_candles(exchange)
    both = ours.select(key).join(theirs.select(key), on=key, how="inner")
    if both.height == 0:
        return []
    return mismatch_findings(
        compare_candles(
            ours.join(both, on=key, how="semi"),
            theirs.join(both, on=key, how="semi"),
            rel_tolerance,
        )
    )


def fill_from_exchange(canonical: pl.DataFrame, exchange: pl.DataFrame) -> pl.DataFrame:
    """Canonical bars, completed by exchange bars for buckets that have no canonical bar.

    Args:
        canonical: Canonical candles of one series (one instrument and interval).
        exchange: The exchange's bars of the same series.

    Returns:
        A frame of :data:`FILLED_SCHEMA`, sorted by time, with ``origin`` ``canonical`` or
        ``exchange`` per bar.
    """
    ours = conform_candles(canonical).with_columns(pl.lit(ORIGIN_CANONICAL).alias("origin"))
    key = ["instrument", "interval", "open_time"]
    extra = (
        conform_candles(exchange)
        .join(ours.select(key), on=key, how="anti")
        .with_columns(pl.lit(ORIGIN_EXCHANGE).alias("origin"))
    )
    return pl.concat([ours, extra]).sort("instrument", "interval", "open_time")
