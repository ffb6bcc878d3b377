"""The daily drift report's pure parts: reference window, usable rows, weekly features, output."""

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from goldrl_dagster.lib.drift.daily import (
    ReferenceWindow,
    alert_reason,
    daily_feature_drift,
    drift_plot_png,
    ood_only_features,
    status_counts,
    training_reference_window,
    usable_rows,
    worst_features,
    worst_features_markdown,
)
from goldrl_dagster.lib.drift.feature_drift import DriftThresholds
from goldrl_dagster.lib.drift.reference import reference_from_sample

START = datetime(2025, 6, 2, tzinfo=UTC)
END = datetime(2025, 6, 11, tzinfo=UTC)  # exclusive: days 06-02 … 06-10


def test_the_reference_is_the_training_days_before_the_split():
    mid_day = training_reference_window(START, END, datetime(2025, 6, 9, 12, tzinfo=UTC))
    # The split's day mixes training and held-out bars: left out.
    assert (mid_day.first_day, mid_day.last_day) == (date(2025, 6, 2), date(2025, 6, 8))
    assert "before the split" in mid_day.basis and str(mid_day) == "2025-06-02…2025-06-08"
    midnight = training_reference_window(START, END, datetime(2025, 6, 9, tzinfo=UTC))
    assert midnight.last_day == date(2025, 6, 8)


def test_without_a_split_the_whole_window_and_inside_day_one_that_day():
    whole = training_reference_window(START, END, None)
    assert (whole.first_day, whole.last_day) == (date(2025, 6, 2), date(2025, 6, 10))
    assert "whole dataset window" in whole.basis and whole.first_held_out is None
    short = training_reference_window(START, END, datetime(2025, 6, 2, 18, tzinfo=UTC))
    assert (short.first_day, short.last_day) == (date(2025, 6, 2), date(2025, 6, 2))
    assert "held-out bars included" in short.basis


def test_bad_windows_are_refused():
    with pytest.raises(ValueError, match="is empty"):
        training_reference_window(END, START, None)
    with pytest.raises(ValueError, match="not inside the dataset window"):
        training_reference_window(START, END, END + timedelta(hours=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        training_reference_window(START.replace(tzinfo=None), END, None)


def test_usable_rows_leave_out_warm_up_and_missing_inputs():
    frame = pl.DataFrame(
        {
            "is_warmup": [True, False, False, False],
            "missing_input": [False, True, False, False],
            "x": [1.0, 2.0, 3.0, 4.0],
        }
    )
    assert usable_rows(frame)["x"].to_list() == [3.0, 4.0]
    assert usable_rows(frame.drop("missing_input"))["x"].to_list() == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="is_warmup"):
        usable_rows(frame.drop("is_warmup"))


def _week(seed: int, days: int = 7, shift: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    minutes = np.arange(days * 1440)
    return pl.DataFrame(
        {
            "ret": rng.normal(shift, 1.0, minutes.size),
            "vol": rng.gamma(2.0, 1.0, minutes.size),
            "tow_sin": np.sin(2 * np.pi * minutes / 10080),
        }
    )


def test_a_day_of_a_weekly_feature_is_judged_by_ood_only():
    reference = reference_from_sample(_week(1).to_dict(as_series=False))
    day = _week(2).slice(2 * 1440, 1440)  # Wednesday: a narrow slice of the weekly cycle
    assert ood_only_features(reference.names) == ("tow_sin",)
    report = daily_feature_drift(reference, day)
    assert report.status == "ok", report.to_frame()
    tow = report.feature("tow_sin")
    assert tow.psi > 1.0 and tow.status == "ok"  # reported, not judged
    assert [f.name for f in report.features] == ["ret", "vol", "tow_sin"]
    # Judged like the others it would alert every day.
    assert daily_feature_drift(reference, day, ood_only=()).feature("tow_sin").status == "alert"
    with pytest.raises(ValueError, match="not in the reference"):
        daily_feature_drift(reference, day, ood_only=["nope"])


def test_a_shifted_feature_alerts_and_leads_the_tables():
    reference = reference_from_sample(_week(1).to_dict(as_series=False))
    day = _week(3, days=1).with_columns(pl.col("ret") + 1.0)
    report = daily_feature_drift(reference, day, DriftThresholds())
    assert report.status == "alert" and report.by_status("alert") == ("ret",)
    assert status_counts(report) == {"ok": 2, "warn": 0, "alert": 1}
    assert worst_features(report, 1)[0].name == "ret"
    table = worst_features_markdown(report).splitlines()
    assert table[0].startswith("| feature | status | psi")
    assert table[2].startswith("| ret | **alert** |")
    window = ReferenceWindow(date(2025, 6, 2), date(2025, 6, 8), "training days")
    reason = alert_reason(
        report, instrument="XAUT-USDT", interval="1m", day=date(2025, 6, 21), model_id="m1",
        window=window,
    )  # fmt: skip
    assert reason.startswith("feature drift alert on XAUT-USDT 1m 2025-06-21 against model m1")
    assert "2025-06-02…2025-06-08" in reason and "ret (PSI" in reason
    calm = daily_feature_drift(reference, _week(4, days=1))
    with pytest.raises(ValueError, match="no alerting feature"):
        alert_reason(
            calm, instrument="X", interval="1m", day=date(2025, 6, 21), model_id="m", window=window
        )


def test_the_plot_is_a_png_even_with_a_feature_without_values():
    reference = reference_from_sample(_week(1).to_dict(as_series=False))
    day = _week(5, days=1).with_columns(pl.lit(None, dtype=pl.Float64).alias("vol"))
    report = daily_feature_drift(reference, day)
    assert math.isnan(report.feature("vol").psi)
    png = drift_plot_png(report, title="test")
    assert png.startswith(b"\x89PNG") and len(png) > 1000
