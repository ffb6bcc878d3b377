"""The funding suite, run for real through GX, bites on planted bad settlements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from expectations.funding import GRID_COLUMN, SPACING_COLUMN, validate_funding

T0 = datetime(2025, 3, 8, tzinfo=UTC)
H = timedelta(hours=1)


def settlements(n: int = 6, hours: int = 4) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "instrument": ["PAXG-USDT"] * n,
            "funding_time": [T0 + i * hours * H for i in range(n)],
            "funding_rate": [1e-4 * (i - 2) for i in range(n)],
            "funding_interval_hours": pl.Series([None] + [hours] * (n - 1), dtype=pl.Int32),
            "funding_interval_source": [None] + ["settlement_spacing"] * (n - 1),
            "source": ["bingx_rest"] * n,
        }
    )


def failed(frame: pl.DataFrame) -> dict[tuple[str, str | None], list[str]]:
    result = validate_funding(frame)
    return {(f.expectation, f.column): f.sample for f in result.failures}


def test_clean_settlements_pass_and_an_unknown_interval_is_not_judged():
    result = validate_funding(settlements())
    assert result.success and result.evaluated == result.successful > 5


@pytest.mark.parametrize(
    ("plant", "expectation", "column", "at"),
    [
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 3).then(0.5).otherwise("funding_rate")
                .alias("funding_rate")
            ),
            "expect_column_values_to_be_between", "funding_rate", 3,
        ),
        (
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 2).then(3).otherwise("funding_interval_hours")
                .cast(pl.Int32).alias("funding_interval_hours")
            ),
            "expect_column_values_to_be_in_set", "funding_interval_hours", 2,
        ),
        (
            # 02:00 is not on the 8 h grid the row claims.
            lambda f: f.with_columns(
                pl.when(pl.int_range(pl.len()) == 5).then(8).otherwise("funding_interval_hours")
                .cast(pl.Int32).alias("funding_interval_hours"),
            ).with_columns(
                pl.when(pl.int_range(pl.len()) == 5).then(pl.col("funding_time") + 2 * H)
                .otherwise("funding_time").alias("funding_time")
            ),
            "expect_column_values_to_be_between", GRID_COLUMN, 5,
        ),
    ],
)  # fmt: skip
def test_a_planted_bad_value_is_named_with_its_settlement(plant, expectation, column, at):
    frame = plant(settlements())
    failures = failed(frame)
    assert (expectation, column) in failures
    assert failures[(expectation, column)] == [frame["funding_time"][at].isoformat()]


def test_a_repeated_or_backward_settlement_fails_uniqueness_and_order():
    base = settlements()
    repeated = pl.concat([base, base.slice(2, 1)])
    failures = failed(repeated)
    assert ("expect_compound_columns_to_be_unique", "instrument,funding_time") in failures
    assert ("expect_column_values_to_be_between", SPACING_COLUMN) in failures
    backward = pl.concat([base.slice(0, 3), base.slice(4, 2), base.slice(3, 1)])
    failures = failed(backward)
    assert failures[("expect_column_values_to_be_between", SPACING_COLUMN)] == [
        base["funding_time"][3].isoformat()
    ]


def test_an_empty_day_and_a_missing_column_are_refused():
    assert validate_funding(settlements().clear()).failures[0].expectation == "no rows"
    with pytest.raises(ValueError, match="funding_interval_source"):
        validate_funding(settlements().drop("funding_interval_source"))
