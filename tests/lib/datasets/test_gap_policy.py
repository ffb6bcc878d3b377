"""Gap policies of dataset builds: parsing, holes, segments, carry-forward, hash invariance."""

from datetime import date, timedelta

import polars as pl
import pytest
from thin_market import THIN_START, thin_market_candles

from goldrl_dagster.lib.datasets.build import DatasetConfig, assemble_dataset
from goldrl_dagster.lib.datasets.feature_days import (
    checked_day_features,
    checked_day_features_in_runs,
)
from goldrl_dagster.lib.datasets.gap_policy import (
    CARRIED_FORWARD,
    GapPolicy,
    GapPolicyError,
    carry_forward,
    find_holes,
    refuse_gaps,
    segment_column,
    split_segments,
)
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.features.spec import CORE_V1
from goldrl_dagster.lib.market.closures import ClosureCalendar, VenueClosure

DAY = THIN_START.date()


@pytest.mark.parametrize(
    ("text", "kind", "bars", "key"),
    [
        ("refuse", "refuse", 0, "gaps-refuse"),
        ("segments", "segments", 0, "gaps-segments"),
        ("carry_forward:3", "carry_forward", 3, "gaps-carry_forward-3"),
        ("carry_forward-3", "carry_forward", 3, "gaps-carry_forward-3"),
    ],
)
def test_policies_parse_to_one_spelling(text, kind, bars, key):
    policy = GapPolicy.parse(text)
    assert (policy.kind, policy.max_bars, policy.key_field) == (kind, bars, key)
    assert GapPolicy.parse(policy.spelling) == policy


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fill", "unknown"),
        ("carry_forward", "unknown"),
        ("carry_forward:0", "1..1440"),
        ("carry_forward:9999", "1..1440"),
    ],
)
def test_bad_policies_are_refused_naming_the_spellings(text, message):
    with pytest.raises(ValueError, match=message):
        GapPolicy.parse(text)


def test_default_policies_leave_config_hash_and_partition_key_unchanged():
    request = DatasetRequest("XAUT-USDT", "1m", date(2025, 3, 8), date(2025, 3, 9))
    assert request.partition_key() == (
        "XAUT-USDT:1m:2025-03-08:2025-03-09:ta-v2:holdout-0.25:equity_change_after_costs"
    )
    config = request.to_config()
    before = DatasetConfig(
        config.instrument, "1m", config.window_start, config.window_end,
        config.feature_fingerprint,
    )  # fmt: skip
    assert config.canonical_json() == before.canonical_json()
    assert "gap_policy" not in config.canonical_json()
    assert "rules_before_listing" not in config.canonical_json()


def test_non_default_policies_change_config_and_round_trip_through_the_key():
    request = DatasetRequest(
        "XAUT-USDT", "5m", date(2025, 3, 8), date(2025, 3, 9), gap_policy="carry_forward:2",
        rules_before_listing="earliest",
    )  # fmt: skip
    key = request.partition_key()
    assert key.endswith(":gaps-carry_forward-2:rules-earliest")
    assert DatasetRequest.from_partition_key(key) == request
    assert '"gap_policy":"carry_forward:2"' in request.to_config().canonical_json()
    with pytest.raises(ValueError, match="not canonical"):
        DatasetRequest.from_partition_key(key.replace(":5m:", ":5m:").replace("-2:", "-02:"))
    with pytest.raises(ValueError, match="gaps-POLICY or rules-POLICY"):
        DatasetRequest.from_partition_key(key.replace("gaps-", "holes-"))


def test_holes_respect_the_interval_and_declared_closures():
    candles = thin_market_candles(300, 1, interval="5m", missing=((10, 1), (100, 3)))
    holes = find_holes(candles, "5m")
    assert [(h.start, h.missing_bars) for h in holes] == [
        (THIN_START + timedelta(minutes=50), 1),
        (THIN_START + timedelta(minutes=500), 3),
    ]
    closure = VenueClosure(
        THIN_START + timedelta(minutes=500), THIN_START + timedelta(minutes=515), "holiday"
    )
    closed = ClosureCalendar(closures=(closure,))
    assert len(find_holes(candles, "5m", closed)) == 1
    with pytest.raises(GapPolicyError, match=r"2 hole\(s\)"):
        refuse_gaps([], holes, "PAXG-USDT")
    refuse_gaps([], [], "PAXG-USDT")


def test_carry_forward_fills_flat_bars_with_a_flag_and_refuses_longer_holes():
    candles = thin_market_candles(60, 2, missing=((20, 2), (40, 1)))
    holes = find_holes(candles, "1m")
    filled = carry_forward(candles, holes, "1m", max_bars=2)
    assert filled.height == 60 and find_holes(filled, "1m") == []
    flat = filled.filter(pl.col(CARRIED_FORWARD))
    assert flat.height == 3
    last_close = candles.filter(pl.col("open_time") < THIN_START + timedelta(minutes=20))["close"][
        -1
    ]
    first = flat.row(0, named=True)
    assert first["open"] == first["high"] == first["low"] == first["close"] == last_close
    assert (flat["volume"] == 0.0).all()
    assert filled.filter(~pl.col(CARRIED_FORWARD)).drop(CARRIED_FORWARD).equals(candles)
    with pytest.raises(GapPolicyError, match="longer than the carry_forward limit of 1"):
        carry_forward(candles, holes, "1m", max_bars=1)


def test_segments_warm_up_afresh_and_never_see_across_a_hole():
    candles = thin_market_candles(1440, 3, missing=((600, 2),))
    runs = split_segments(candles, find_holes(candles, "1m"))
    assert [r.height for r in runs] == [600, 838]
    features = checked_day_features_in_runs(runs, CORE_V1, DAY, partition_key="k").features
    assert features["open_time"].equals(candles["open_time"])
    second = features.filter(pl.col("open_time") >= runs[1]["open_time"][0])
    # The second run starts afresh: its first warmup_bars rows are warm-up again.
    assert second["is_warmup"].head(CORE_V1.warmup_bars).all()
    assert not second["is_warmup"][CORE_V1.warmup_bars :].any()
    # Identical to the second run computed alone: nothing before the hole leaks in.
    alone = checked_day_features(runs[1], CORE_V1, DAY, partition_key="x").features
    assert second.equals(alone)
    table = assemble_dataset(segment_column(runs), features, CORE_V1, extra_columns=("segment",))
    assert table["segment"].unique().sort().to_list() == [0, 1]
    assert table.columns[:8] == [
        "open_time", "open", "high", "low", "close", "volume", "funding_rate", "segment",
    ]  # fmt: skip


def test_a_feature_set_bound_to_another_interval_is_refused_up_front():
    with pytest.raises(ValueError, match="defined on 1m bars, not 5m"):
        DatasetRequest("XAUT-USDT", "5m", date(2025, 3, 8), date(2025, 3, 9), "mtf", 1)
    assert DatasetRequest("XAUT-USDT", "5m", date(2025, 3, 8), date(2025, 3, 9), "mtf_5m", 1)
