"""A dataset refused over open gaps names the first ones and counts the rest."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.defs.market_data.gaps import LISTED_GAPS, ensure_no_open_gaps
from goldrl_dagster.lib.market.closures import ClosureCalendar

START = datetime(2025, 4, 2, tzinfo=UTC)
HOLES = 60


def test_refusal_lists_the_first_gaps_then_how_many_more(clean_database):
    candles = random_walk_candles(3000, seed=4, start=START)
    # Drop one bar in every 50: 60 one-bar holes, none recorded in the gap table yet.
    holed = candles.with_row_index().filter(pl.col("index") % 50 != 25).drop("index")
    with pytest.raises(dg.Failure) as caught:
        ensure_no_open_gaps(
            clean_database, "PAXG-USDT", START, START + timedelta(minutes=3000), holed,
            closures=ClosureCalendar(),
        )  # fmt: skip
    text = caught.value.description
    assert sum(line.startswith("hole ") for line in text.splitlines()) == LISTED_GAPS
    assert text.splitlines()[-1] == f"… and {HOLES - LISTED_GAPS} more"
    assert caught.value.metadata["open_gaps"].value == HOLES
