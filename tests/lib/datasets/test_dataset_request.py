"""Dataset requests and their readable, parseable Dagster partition keys."""

from datetime import UTC, date, datetime

import pytest

from goldrl_dagster.lib.datasets.request import DatasetRequest, parse_feature_set_ref
from goldrl_dagster.lib.features.spec import TA_V2

KEY = "XAUT-USDT:1m:2025-03-08:2025-03-09:ta-v2:holdout-0.25:equity_change_after_costs"


def _request(**changes: object) -> DatasetRequest:
    fields: dict[str, object] = {
        "instrument": "XAUT-USDT",
        "interval": "1m",
        "start_day": date(2025, 3, 8),
        "end_day": date(2025, 3, 9),
    }
    return DatasetRequest(**(fields | changes))  # type: ignore[arg-type]


def test_key_spells_out_the_request_and_round_trips():
    request = _request()
    assert request.partition_key() == KEY
    assert DatasetRequest.from_partition_key(KEY) == request
    assert request.spec is TA_V2
    assert request.window_start == datetime(2025, 3, 8, tzinfo=UTC)
    assert request.window_end == datetime(2025, 3, 10, tzinfo=UTC)
    assert request.days == [date(2025, 3, 8), date(2025, 3, 9)]


def test_aliases_resolve_to_one_key():
    assert _request(instrument="gold_usdt").partition_key() == KEY


def test_config_carries_the_fingerprint_and_label_settings():
    config = _request(holdout_fraction=0.3, reward="drawdown_penalised").to_config()
    assert config.feature_fingerprint == TA_V2.fingerprint
    assert (config.holdout_fraction, config.reward) == (0.3, "drawdown_penalised")
    assert config.window_end == datetime(2025, 3, 10, tzinfo=UTC)


def test_every_field_changes_the_key():
    changes = [
        {"instrument": "PAXG-USDT"},
        {"interval": "5m"},
        {"start_day": date(2025, 3, 7)},
        {"end_day": date(2025, 3, 10)},
        {"feature_set": "core", "feature_set_version": 1},
        {"holdout_fraction": 0.2},
        {"reward": "turnover_penalised"},
    ]
    keys = {_request(**change).partition_key() for change in changes}
    assert len(keys) == len(changes) and KEY not in keys
    for key in keys:
        assert DatasetRequest.from_partition_key(key).partition_key() == key


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instrument": "BTC-USDT"}, "instrument 'BTC-USDT'"),
        ({"interval": "7m"}, "interval '7m'"),
        ({"end_day": date(2025, 3, 7)}, "before start_day"),
        ({"start_day": datetime(2025, 3, 8, tzinfo=UTC)}, "start_day must be a date"),
        ({"feature_set": "nope"}, "unknown feature set 'nope'"),
        ({"feature_set_version": 9}, "has no version 9"),
        ({"holdout_fraction": 1.0}, "holdout_fraction must be in (0, 1)"),
        ({"holdout_fraction": True}, "holdout_fraction must be a number"),
        ({"reward": "Bad Reward"}, "reward 'Bad Reward'"),
        ({"reward": "log_return"}, "unknown reward 'log_return'; known: ['drawdown_penalised'"),
    ],
)
def test_bad_requests_are_refused_by_name(changes, message):
    with pytest.raises(ValueError) as err:
        _request(**changes)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("XAUT-USDT:1m:2025-03-08", "must have 7 fields"),
        (KEY.replace("ta-v2", "ta2"), "must be NAME-vVERSION"),
        (KEY.replace("holdout-0.25", "h0.25"), "must be holdout-FRACTION"),
        (KEY.replace("holdout-0.25", "holdout-x"), "is not a number"),
        (KEY.replace("2025-03-08", "2025-3-8"), "is not a YYYY-MM-DD day"),
        (KEY.replace("holdout-0.25", "holdout-0.250"), "is not canonical; use"),
        (KEY.replace("XAUT-USDT", "xautusdt"), "is not canonical; use"),
    ],
)
def test_malformed_keys_are_refused_with_the_reason(key, message):
    with pytest.raises(ValueError) as err:
        DatasetRequest.from_partition_key(key)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("ta", ("ta", None)), ("ta:2", ("ta", 2)), ("ta_basic-v1", ("ta_basic", 1))],
)
def test_feature_set_references(text, parsed):
    assert parse_feature_set_ref(text) == parsed


@pytest.mark.parametrize("text", ["", "ta:0", "ta:x", "ta-vx"])
def test_bad_feature_set_references(text):
    with pytest.raises(ValueError):
        parse_feature_set_ref(text)
