"""``split_segments`` on many holes: the same runs as cutting at each hole with its own filter."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.datasets.gap_policy import find_holes, split_segments


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_runs_equal_a_filter_per_hole(unit):
    rng = np.random.default_rng(5)
    keep = rng.random(3_000) > 0.05
    start = datetime(2025, 1, 1, tzinfo=UTC)
    times = [start + timedelta(minutes=i) for i in np.flatnonzero(keep).tolist()]
    candles = pl.DataFrame({"open_time": times, "close": rng.random(len(times))}).with_columns(
        pl.col("open_time").dt.cast_time_unit(unit)
    )
    holes = find_holes(candles, "1m")
    assert len(holes) > 100
    bounds = [None, *sorted({g.end for g in holes}), None]
    expected = []
    for lower, upper in pairwise(bounds):
        run = candles
        if lower is not None:
            run = run.filter(pl.col("open_time") >= lower)
        if upper is not None:
            run = run.filter(pl.col("open_time") < upper)
        expected.append(run)
    runs = split_segments(candles, holes)
    assert len(runs) == len(expected) == len(holes) + 1
    for got, want in zip(runs, expected, strict=True):
        assert got.equals(want) and got.schema == want.schema
    assert split_segments(candles, []) == [candles]
    assert split_segments(candles.head(0), holes) == []
