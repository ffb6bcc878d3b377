"""Funding history without intervals feeds the features once each settlement's interval is known.

The rows are shaped like BingX's funding history (no ``fundingIntervalHours``): stored as they
come, every bar's funding is missing; stored through ``store_funding_rates`` the intervals are
established per settlement (8 h, then 4 h after the change) and the annualised rate follows.
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from candle_factory import random_walk_candles

from goldrl_dagster.lib.bingx.models import parse_funding_rate
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import FeatureSetSpec, FeatureSpec
from goldrl_dagster.lib.storage import feeds_store as fs
from goldrl_dagster.lib.storage.feature_inputs import read_feature_inputs

SYMBOL = "PAXG-USDT"
H = timedelta(hours=1)
DAY = datetime(2025, 3, 4, tzinfo=UTC)
CHANGE = DAY + 8 * H  # 8 h settlements until 08:00, 4 h after
SPEC = FeatureSetSpec("f", 1, (FeatureSpec("fr", "funding_rate_annualised"),))


def history() -> list:
    times = [DAY - 24 * H + k * 8 * H for k in range(5)]  # 03-03 00:00 .. 03-04 08:00
    times += [CHANGE + k * 4 * H for k in range(1, 6)]  # 12:00 .. 03-05 04:00
    rows = [
        {"symbol": SYMBOL, "fundingRate": f"{1e-4 * (1 + k % 3):.6f}", "fundingTime": int(
            t.timestamp() * 1000
        )}
        for k, t in enumerate(times)
    ]  # fmt: skip
    return [parse_funding_rate(r) for r in rows]


def features(db) -> np.ndarray:
    bars = random_walk_candles(1440, 5, DAY, instrument=SYMBOL)
    inputs = read_feature_inputs(db, SYMBOL, DAY, DAY + 24 * H)
    return compute_features(bars, SPEC, inputs=inputs)["fr"].to_numpy()


def test_funding_is_missing_on_every_bar_without_intervals_and_usable_with_them(clean_database):
    db = clean_database
    rates = history()
    fs.write_funding_rates(db, fs.funding_frame(rates, "bingx_rest"))
    assert np.isnan(features(db)).all()  # the production symptom: no interval, no funding
    fs.store_funding_rates(db, fs.funding_frame(rates, "bingx_rest"))
    out = features(db)
    assert not np.isnan(out).any()
    by_time = {at(r.funding_time_ms): r.funding_rate for r in rates}
    # Bar 00:00 closes 00:01: the 8 h settlement of 00:00 applies, annualised ×3×365; from
    # the bar closing at 16:00 the 4 h settlement of 16:00, annualised ×6×365.
    assert out[0] == pytest.approx(by_time[DAY] * 3 * 365, rel=1e-12)
    assert out[16 * 60 - 1] == pytest.approx(by_time[DAY + 16 * H] * 6 * 365, rel=1e-12)
    assert out[16 * 60 - 2] == pytest.approx(by_time[DAY + 12 * H] * 6 * 365, rel=1e-12)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
