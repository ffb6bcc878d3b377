"""Great Expectations suites for feature snapshots, one suite per feature set.

Each suite checks what training and trading silently assume of a feature partition:

* one row per candle of the partition (the candle count arrives as a suite parameter), with
  unique, non-null open times, and exactly the set's features;
* past the warm-up, every feature is a finite number (NaN is null to GX; infinities fail the
  finite range). A feature over an external input may be missing only on rows flagged
  ``missing_input``;
* ranges the arithmetic bounds: RSI, ADX and stochastic (scaled to [0, 1]) within [0, 1];
  Bollinger %B within [-1.5, 2.5] (outside means a price far beyond the bands: a data defect,
  not a market); widths, NATR, realised volatility and bar range >= 0; time encodings within
  [-1, 1].

The frame is validated in long form (one row per bar and feature, with that feature's bounds
beside its value), so a handful of expectations cover every feature: GX's cost grows with the
number of expectations, not rows, and one expectation per feature made a partition of the
``ta`` set take seconds. Failures are split back per feature and name the offending bars.
"""

from __future__ import annotations

from functools import cache

import great_expectations as gx
import great_expectations.expectations as gxe
import polars as pl
from great_expectations.expectations.row_conditions import Column

from expectations.candles import SAMPLE_SIZE, ExpectationFailure, SuiteResult
from expectations.engine import column_of, failed_results, gx_context, run_suite
from goldrl_dagster.lib.features.spec import FeatureSetSpec, FeatureSpec

CHECKED = "checked"
WARMUP, INPUT_MISSING, USABLE = 0, 1, 2
# Beyond any feature value we compute; only infinities (and absurd values) exceed it.
FINITE_LIMIT = 1e300
PCTB_RANGE = (-1.5, 2.5)

_UNIT_INTERVAL = ("rsi", "adx", "stochastic")
_NON_NEGATIVE = ("natr", "bollinger_width", "realized_volatility", "range_rel")
_UNIT_CIRCLE = ("time_of_day", "time_of_week")
_ROW_COUNT = "expect_table_row_count_to_equal"
# Expectations whose failures are reported per feature (their rows are bar x feature).
_PER_FEATURE = (
    "expect_column_values_to_not_be_null",
    "expect_column_pair_values_a_to_be_greater_than_b",
)


def suite_name(spec: FeatureSetSpec) -> str:
    """Name of a feature set's suite, e.g. ``features_ta_v2``."""
    return f"features_{spec.name}_v{spec.version}"


def feature_bounds(feature: FeatureSpec) -> tuple[float, float]:
    """The closed range a feature's finite values must lie in (by its function)."""
    if feature.function in _UNIT_INTERVAL:
        return 0.0, 1.0
    if feature.function == "bollinger_pctb":
        return PCTB_RANGE
    if feature.function in _NON_NEGATIVE:
        return 0.0, FINITE_LIMIT
    if feature.function in _UNIT_CIRCLE:
        return -1.0, 1.0
    return -FINITE_LIMIT, FINITE_LIMIT


def features_suite(spec: FeatureSetSpec) -> gx.ExpectationSuite:
    """Build the suite of one feature set (see the module docstring).

    It validates the long frame ``validate_features`` prepares (columns ``open_time``,
    ``feature``, ``value``, ``low``, ``high``, ``checked``); the row count takes the suite
    parameter ``long_rows`` (candles x features).

    Returns:
        A new, unsaved suite named ``suite_name(spec)``.
    """
    suite = gx.ExpectationSuite(name=suite_name(spec))
    checked = Column(CHECKED) == 1
    suite.add_expectation(gxe.ExpectTableRowCountToEqual(value={"$PARAMETER": "long_rows"}))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="open_time"))
    suite.add_expectation(
        gxe.ExpectColumnDistinctValuesToEqualSet(
            column="feature", value_set=list(spec.feature_names)
        )
    )
    suite.add_expectation(gxe.ExpectCompoundColumnsToBeUnique(column_list=["open_time", "feature"]))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="value", row_condition=checked))
    # NaN is reported once, by the not-null expectation, not again by the bounds.
    for column_a, column_b in (("value", "low"), ("high", "value")):
        suite.add_expectation(
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=column_a,
                column_B=column_b,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                row_condition=checked,
            )
        )
    return suite


@cache
def _suite(spec: FeatureSetSpec) -> gx.ExpectationSuite:
    gx_context()  # GX builds expectations only inside an active context
    return features_suite(spec)


def _long_frame(features: pl.DataFrame, spec: FeatureSetSpec) -> pl.DataFrame:
    missing_input = (
        pl.col("missing_input") if "missing_input" in features.columns else pl.lit(False)
    )
    state = (
        pl.when(pl.col("is_warmup"))
        .then(WARMUP)
        .when(missing_input)
        .then(INPUT_MISSING)
        .otherwise(USABLE)
    )
    wide = features.select(
        "open_time",
        state.cast(pl.Int64).alias("row_state"),
        *(pl.col(name).cast(pl.Float64) for name in spec.feature_names),
    )
    rules = pl.DataFrame(
        {
            "feature": list(spec.feature_names),
            "low": [feature_bounds(f)[0] for f in spec.features],
            "high": [feature_bounds(f)[1] for f in spec.features],
            # Input features may be absent on rows flagged missing_input; candle ones may not.
            "needs_state": [USABLE if f.inputs else INPUT_MISSING for f in spec.features],
        }
    )
    # Bar-major order keeps the frame's bars together; NaN stays NaN (null to GX on purpose).
    return (
        wide.with_row_index("bar")
        .unpivot(
            index=["bar", "open_time", "row_state"],
            on=list(spec.feature_names),
            variable_name="feature",
            value_name="value",
        )
        .join(rules, on="feature", how="left", maintain_order="left")
        .with_columns((pl.col("row_state") >= pl.col("needs_state")).cast(pl.Int64).alias(CHECKED))
        .sort("bar", maintain_order=True)
        .select("open_time", "feature", "value", "low", "high", CHECKED)
    )


def _per_feature(
    expectation: str, rows: list[int], long: pl.DataFrame, spec: FeatureSetSpec
) -> list[ExpectationFailure]:
    offending = long.select("feature", "open_time")[rows]
    failures = []
    for name in spec.feature_names:
        hits = offending.filter(pl.col("feature") == name)
        if hits.height:
            failures.append(
                ExpectationFailure(
                    expectation=expectation,
                    column=name,
                    unexpected_count=hits.height,
                    sample=[t.isoformat() for t in hits["open_time"].head(SAMPLE_SIZE)],
                )
            )
    return failures


def validate_features(
    features: pl.DataFrame, spec: FeatureSetSpec, candle_rows: int
) -> SuiteResult:
    """Validate one feature partition against its feature set's suite.

    Args:
        features: A ``compute_features`` frame (``open_time``, ``is_warmup``, optionally
            ``missing_input``, the spec's feature columns) for the partition's bars.
        spec: The feature set.
        candle_rows: Number of candles in the partition; the frame must have as many rows.

    Returns:
        The summary. Value failures are reported per feature (``column`` is the feature name)
        with the open times of the offending bars; a wrong row count reports the number of
        missing or surplus bars.

    Raises:
        ValueError: If a required column is missing or ``candle_rows`` is negative.
        RuntimeError: If GX itself fails to evaluate an expectation.
    """
    required = ("open_time", "is_warmup", *spec.feature_names)
    missing = [c for c in required if c not in features.columns]
    if missing:
        raise ValueError(
            f"feature frame lacks column(s) {missing} of feature set {spec.name} v{spec.version}"
        )
    if candle_rows < 0:
        raise ValueError(f"candle_rows must be >= 0, got {candle_rows}")
    width = len(spec.feature_names)
    long = _long_frame(features, spec)
    suite = _suite(spec)
    outcome = run_suite(
        suite,
        long.to_pandas(),
        parameters={"long_rows": candle_rows * width},
        # COMPLETE: every offending row, so each feature's failure count is exact.
        result_format={"result_format": "COMPLETE"},
    )
    failures: list[ExpectationFailure] = []
    for item in failed_results(suite, outcome):
        config = item.expectation_config
        rows = [int(i) for i in item.result.get("unexpected_index_list") or []]
        if config.type in _PER_FEATURE and column_of(config.kwargs) != "open_time":
            failures.extend(_per_feature(config.type, rows, long, spec))
            continue
        if config.type == _ROW_COUNT:
            count = abs(int(item.result.get("observed_value") or 0) - candle_rows * width) // width
        else:
            count = int(item.result.get("unexpected_count") or 0)
        sample = list(dict.fromkeys(long["open_time"][rows].to_list()))
        failures.append(
            ExpectationFailure(
                expectation=config.type,
                column=column_of(config.kwargs),
                unexpected_count=count,
                sample=[t.isoformat() if t else "null" for t in sample[:SAMPLE_SIZE]],
            )
        )
    evaluated = len(outcome.results)
    return SuiteResult(
        suite=suite.name,
        success=not failures,
        evaluated=evaluated,
        successful=evaluated - len(failures),
        failures=tuple(failures),
    )
