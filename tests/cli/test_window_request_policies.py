"""``goldrl evaluate MODEL --start --end`` builds the window like the model's training dataset."""

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from goldrl_dagster.cli.governance import _window_request
from goldrl_dagster.lib.features.spec import feature_set_by_name
from goldrl_dagster.lib.storage import registry

TA = feature_set_by_name("ta", 2)


@pytest.mark.parametrize(
    ("config", "gaps", "rules", "exchange"),
    [
        ({}, "refuse", "refuse", False),
        (
            {"gap_policy": "segments", "rules_before_listing": "earliest", "exchange_bars": True},
            "segments",
            "earliest",
            True,
        ),
    ],
)
def test_window_request_carries_the_training_datasets_policies(
    monkeypatch, config, gaps, rules, exchange
):
    model = SimpleNamespace(dataset_hash="d" * 64, feature_fingerprint=TA.fingerprint)
    trained_on = SimpleNamespace(
        instruments=["XAUT-USDT"],
        interval="1h",
        window_start=datetime(2025, 3, 1, tzinfo=UTC),
        config={"reward": "equity_change_after_costs", **config},
    )
    monkeypatch.setattr(registry, "load_model_record", lambda _db, _id: model)
    monkeypatch.setattr(registry, "load_dataset_record", lambda _db, _hash: trained_on)
    request = _window_request(SimpleNamespace(db=None), "m1", "2025-04-01", "2025-04-02")
    assert (request.interval, request.feature_set, request.feature_set_version) == ("1h", "ta", 2)
    assert (request.gap_policy, request.rules_before_listing) == (gaps, rules)
    assert request.exchange_bars is exchange
