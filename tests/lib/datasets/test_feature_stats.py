"""Per-feature statistics over the non-warm-up rows of a feature frame."""

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.datasets.feature_stats import STAT_COLUMNS, feature_statistics
from goldrl_dagster.lib.features.spec import FeatureSetSpec, FeatureSpec

SPEC = FeatureSetSpec(
    name="stats_test",
    version=1,
    features=(
        FeatureSpec("a", "log_return", (("periods", 1),)),
        FeatureSpec("b", "log_return", (("periods", 2),)),
    ),
)


def _frame(a: list[float], b: list[float], warmup: list[bool]) -> pl.DataFrame:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "open_time": [start + timedelta(minutes=i) for i in range(len(a))],
            "is_warmup": warmup,
            "a": a,
            "b": b,
        }
    )


def test_hand_computable_statistics_skip_warmup_and_count_missing():
    nan = float("nan")
    frame = _frame(
        a=[100.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        b=[nan, nan, 1.0, math.inf, nan, 3.0],
        warmup=[True, False, False, False, False, False],
    )
    stats = {row["feature"]: row for row in feature_statistics(frame, SPEC).iter_rows(named=True)}
    a = stats["a"]
    assert (a["rows"], a["count"], a["missing_rate"]) == (5, 5, 0.0)
    assert a["mean"] == 3.0 and a["min"] == 1.0 and a["max"] == 5.0
    assert a["std"] == pytest.approx(np.sqrt(2.0))
    assert a["q50"] == 3.0 and a["q25"] == 2.0 and a["q75"] == 4.0
    assert a["q01"] == pytest.approx(1.04)
    b = stats["b"]
    # b is finite on 2 of the 5 usable rows: 1.0 and 3.0.
    assert (b["rows"], b["count"], b["missing_rate"]) == (5, 2, 0.6)
    assert (b["mean"], b["min"], b["max"], b["q50"]) == (2.0, 1.0, 3.0, 2.0)


def test_a_feature_with_no_finite_value_has_null_statistics():
    nan = float("nan")
    stats = feature_statistics(_frame([1.0, 2.0], [nan, nan], [False, False]), SPEC)
    b = stats.filter(pl.col("feature") == "b").row(0, named=True)
    assert (b["count"], b["missing_rate"]) == (0, 1.0)
    assert all(b[c] is None for c in STAT_COLUMNS[3:])


def test_all_warmup_gives_zero_rows():
    stats = feature_statistics(_frame([1.0], [1.0], [True]), SPEC)
    assert stats["rows"].to_list() == [0, 0] and stats["missing_rate"].to_list() == [0.0, 0.0]
    assert stats.columns == ["feature", *STAT_COLUMNS]


def test_a_missing_column_is_named():
    with pytest.raises(ValueError, match=r"\['b'\]"):
        feature_statistics(_frame([1.0], [1.0], [False]).drop("b"), SPEC)
