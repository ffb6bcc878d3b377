"""The feature-set GX suites accept real features and reject broken frames, naming the bars."""

import math

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import polars as pl
import pytest
from candle_factory import random_walk_candles

from expectations.engine import failed_results, gx_context, raise_if_errored, run_suite
from expectations.features import feature_bounds, suite_name, validate_features
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import CORE_V1, TA_V2, FeatureSpec

BARS = 1000  # past the 890-bar warm-up of ta
BOUND = "expect_column_pair_values_a_to_be_greater_than_b"


@pytest.fixture(scope="module")
def ta_features() -> pl.DataFrame:
    return compute_features(random_walk_candles(BARS, seed=5), TA_V2)


def _set(frame: pl.DataFrame, column: str, row: int, value: float) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )


def _failure(result, expectation: str, column: str | None):
    matches = [f for f in result.failures if f.expectation == expectation and f.column == column]
    assert matches, f"no {expectation} failure on {column}: {result.failures}"
    return matches[0]


def test_computed_features_pass_their_suite(ta_features):
    result = validate_features(ta_features, TA_V2, candle_rows=BARS)
    assert result.success, result.failures
    assert result.suite == suite_name(TA_V2) == "features_ta_v2"
    # Row count, open times, feature names, (bar, feature) unique, finite, lower, upper bound.
    assert result.evaluated == 7


def test_nan_after_warmup_fails_and_names_the_bar(ta_features):
    row = BARS - 10
    bad = _set(ta_features, "rsi_14", row, math.nan)
    result = validate_features(bad, TA_V2, candle_rows=BARS)
    assert not result.success
    failure = _failure(result, "expect_column_values_to_not_be_null", "rsi_14")
    assert failure.unexpected_count == 1
    assert failure.sample == [ta_features["open_time"][row].isoformat()]


def test_nan_inside_warmup_is_allowed(ta_features):
    assert ta_features["is_warmup"][0]
    ok = _set(ta_features, "adx_14", 0, math.nan)
    assert validate_features(ok, TA_V2, candle_rows=BARS).success


def test_infinity_fails_the_finite_range(ta_features):
    bad = _set(ta_features, "log_ret_1", BARS - 1, math.inf)
    result = validate_features(bad, TA_V2, candle_rows=BARS)
    failure = _failure(result, BOUND, "log_ret_1")
    assert failure.sample == [ta_features["open_time"][BARS - 1].isoformat()]


OUT_OF_BOUNDS = {
    "rsi_14": 1.2,
    "stoch_k_14_3_3": -0.1,
    "adx_14": 1.5,
    "bb_pctb_20_2": 3.0,
    "bb_width_20_2": -0.01,
    "natr_14": -1e-6,
    "tod_sin": 1.01,
}


def test_values_outside_their_mathematical_bounds_fail_each_on_its_bar(ta_features):
    bad = ta_features
    for offset, (column, value) in enumerate(OUT_OF_BOUNDS.items()):
        bad = _set(bad, column, BARS - 20 + offset, value)
    result = validate_features(bad, TA_V2, candle_rows=BARS)
    assert {f.column for f in result.failures} == set(OUT_OF_BOUNDS)
    for offset, column in enumerate(OUT_OF_BOUNDS):
        failure = _failure(result, BOUND, column)
        assert failure.sample == [ta_features["open_time"][BARS - 20 + offset].isoformat()]


def test_row_count_must_equal_the_candle_count(ta_features):
    result = validate_features(ta_features.head(BARS - 3), TA_V2, candle_rows=BARS)
    failure = _failure(result, "expect_table_row_count_to_equal", None)
    assert failure.unexpected_count == 3


def test_duplicate_bars_fail(ta_features):
    doubled = pl.concat([ta_features, ta_features.tail(1)])
    result = validate_features(doubled, TA_V2, candle_rows=BARS + 1)
    failure = _failure(result, "expect_compound_columns_to_be_unique", "open_time,feature")
    assert failure.sample == [ta_features["open_time"][BARS - 1].isoformat()]


def test_a_missing_input_excuses_only_input_features():
    from goldrl_dagster.lib.features.spec import FUTURES_V1

    input_feature = next(f for f in FUTURES_V1.features if f.inputs)
    frame = pl.DataFrame(
        {
            "open_time": compute_features(random_walk_candles(3, seed=1), CORE_V1)["open_time"],
            "is_warmup": [False, False, False],
            "missing_input": [False, True, False],
        }
    ).with_columns(pl.lit(0.0).alias(name) for name in FUTURES_V1.feature_names)
    frame = _set(frame, input_feature.name, 1, math.nan)
    assert validate_features(frame, FUTURES_V1, candle_rows=3).success
    # The same hole on a row not flagged missing_input is a defect ...
    unflagged = frame.with_columns(pl.lit(False).alias("missing_input"))
    assert not validate_features(unflagged, FUTURES_V1, candle_rows=3).success
    # ... and a flagged row still needs its candle features.
    candle_hole = _set(frame, "log_ret_1", 1, math.nan)
    result = validate_features(candle_hole, FUTURES_V1, candle_rows=3)
    assert [f.column for f in result.failures] == ["log_ret_1"]


def test_bounds_follow_the_function():
    assert feature_bounds(FeatureSpec("r", "rsi", (("period", 14),))) == (0.0, 1.0)
    assert feature_bounds(FeatureSpec("p", "bollinger_pctb", (("period", 20), ("nbdev", 2.0)))) == (
        -1.5,
        2.5,
    )


def test_a_frame_without_a_feature_column_is_refused(ta_features):
    with pytest.raises(ValueError, match="rsi_14"):
        validate_features(ta_features.drop("rsi_14"), TA_V2, candle_rows=BARS)


def test_an_expectation_that_raises_is_an_error_not_a_data_defect():
    gx_context()
    suite = gx.ExpectationSuite(name="test_raising_expectation")
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="absent"))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="present"))
    outcome = run_suite(suite, pd.DataFrame({"present": [1.0, None]}))
    with pytest.raises(RuntimeError, match=r"not_be_null raised: .*absent"):
        failed_results(suite, outcome)


def test_raise_if_errored_flags_only_the_expectation_that_raised():
    # The outlier and freshness suites check each result with this same function.
    gx_context()
    suite = gx.ExpectationSuite(name="test_raise_if_errored")
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="absent"))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="present"))
    outcome = run_suite(suite, pd.DataFrame({"present": [1.0, None]}))
    by_column = {r.expectation_config.kwargs["column"]: r for r in outcome.results}
    raise_if_errored(by_column["present"])  # a data failure, not an error
    assert not by_column["present"].success
    with pytest.raises(RuntimeError, match=r"raised: .*absent"):
        raise_if_errored(by_column["absent"])
