"""The recorded streams' suites, run for real through GX, bite on planted bad rows."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from expectations.recorded_streams import (
    validate_incr_depth_sequence,
    validate_recorded_books,
    validate_stream_freshness,
)

T0 = datetime(2025, 3, 10, 12, tzinfo=UTC)
MS = timedelta(milliseconds=1)
TIME = pl.Datetime("us", "UTC")


def sequence(ids: list[int], explained: list[bool | None] | None = None) -> pl.DataFrame:
    steps = ([None] if ids else []) + [b - a for a, b in itertools.pairwise(ids)]
    explained = explained or [True if (s or 0) > 1 else None for s in steps]
    return pl.DataFrame(
        {
            "symbol": pl.Series(["XAUT-USDT"] * len(ids), dtype=pl.String),
            "time": pl.Series([T0 + i * 100 * MS for i in range(len(ids))], dtype=TIME),
            "update_id": pl.Series(ids, dtype=pl.Int64),
            "id_step": pl.Series(steps, dtype=pl.Int64),
            "hole_explained": pl.Series(explained, dtype=pl.Boolean),
        }
    )


def books(pairs: list[tuple[float | None, float | None]], channel: str = "depth20@100ms"):
    return pl.DataFrame(
        {
            "symbol": pl.Series(["PAXG-USDT"] * len(pairs), dtype=pl.String),
            "channel": pl.Series([channel] * len(pairs), dtype=pl.String),
            "time": pl.Series([T0 + i * 100 * MS for i in range(len(pairs))], dtype=TIME),
            "best_bid": pl.Series([b for b, _ in pairs], dtype=pl.Float64),
            "best_ask": pl.Series([a for _, a in pairs], dtype=pl.Float64),
        }
    )


def failures(result) -> dict[str | None, list[str]]:
    return {f.column: f.sample for f in result.failures}


def test_a_sequence_in_step_passes_and_an_explained_hole_too():
    assert validate_incr_depth_sequence(sequence([10, 11, 12, 13])).success
    result = validate_incr_depth_sequence(sequence([10, 11, 13, 14]))  # 12: recorded skip
    assert result.success and result.evaluated == result.successful == 6


def test_an_unexplained_hole_names_the_book_after_it():
    frame = sequence([10, 11, 13, 14], explained=[None, None, False, None])
    result = validate_incr_depth_sequence(frame)
    assert not result.success
    at = "XAUT-USDT@incrDepth 2025-03-10T12:00:00.200+00:00"
    assert failures(result) == {"unexplained_hole": [at]}


def test_a_book_going_back_fails_whatever_the_gaps_say():
    frame = sequence([10, 11, 9, 12], explained=[None, None, True, True])
    result = validate_incr_depth_sequence(frame)
    assert set(failures(result)) == {"id_step"}
    assert failures(result)["id_step"] == ["XAUT-USDT@incrDepth 2025-03-10T12:00:00.200+00:00"]


def test_a_repeated_update_id_is_refused_twice_over():
    result = validate_incr_depth_sequence(sequence([10, 11, 11, 12]))
    assert set(failures(result)) == {"id_step", "symbol,update_id"}


@pytest.mark.parametrize(
    ("pair", "column"),
    [((100.5, 100.5), "spread"), ((101.0, 100.5), "spread"), ((-1.0, 100.5), "best_bid"),
     ((100.0, 0.0), "best_ask")],
)  # fmt: skip
def test_a_crossed_locked_or_nonpositive_book_is_named(pair, column):
    result = validate_recorded_books(books([(100.0, 100.5), pair, (100.1, 100.6)], "bookTicker"))
    assert not result.success
    assert failures(result)[column] == ["PAXG-USDT@bookTicker 2025-03-10T12:00:00.100+00:00"]


def test_an_empty_side_is_not_judged_and_an_empty_window_passes():
    assert validate_recorded_books(books([(100.0, None), (None, 100.5), (100.0, 100.5)])).success
    assert validate_recorded_books(books([])).success
    assert validate_incr_depth_sequence(sequence([])).success


def test_a_stream_older_than_the_limit_or_never_received_is_stale():
    ages = pl.DataFrame(
        {"subject": ["XAUT-USDT@trade", "XAUT-USDT@book", "PAXG-USDT@ticker"],
         "age_seconds": [12.0, 301.0, 299.9]}
    )  # fmt: skip
    result = validate_stream_freshness(ages, max_age_seconds=300)
    assert failures(result) == {"age_seconds": ["XAUT-USDT@book"]}
    assert validate_stream_freshness(ages, max_age_seconds=400).success
    with pytest.raises(ValueError, match="max_age_seconds must be positive"):
        validate_stream_freshness(ages, max_age_seconds=0)


def test_a_frame_without_a_needed_column_is_refused_by_name():
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['hole_explained'\]"):
        validate_incr_depth_sequence(sequence([1, 2]).drop("hole_explained"))
    with pytest.raises(ValueError, match=r"\['best_ask'\]"):
        validate_recorded_books(books([(1.0, 2.0)]).drop("best_ask"))
