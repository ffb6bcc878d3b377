"""The learning loop's gap policy and rules before the listing: settings, cycle plans, defaults."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from goldrl_dagster.lib.config import SettingsError, load_settings
from goldrl_dagster.lib.learning.cycle import CycleConfig, CyclePlan, due_cycle
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.market_store import write_candles

SYMBOL = "XAUT-USDT"
DAY = date(2025, 3, 6)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GOLDRL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GOLDRL_HOME", str(tmp_path / "home"))


def test_settings_default_to_refuse_and_accept_the_policies(clean_env, monkeypatch):
    settings = load_settings()
    assert (settings.learning_gap_policy, settings.learning_rules_before_listing) == (
        "refuse",
        "refuse",
    )
    monkeypatch.setenv("GOLDRL_LEARNING_GAP_POLICY", " carry_forward-3 ")
    monkeypatch.setenv("GOLDRL_LEARNING_RULES_BEFORE_LISTING", "assumed-0123456789abcdef")
    settings = load_settings()
    assert settings.learning_gap_policy == "carry_forward:3"
    assert settings.learning_rules_before_listing == "assumed:0123456789abcdef"


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("GOLDRL_LEARNING_GAP_POLICY", "skip", "refuse, segments or carry_forward:N"),
        ("GOLDRL_LEARNING_GAP_POLICY", "carry_forward:0", "N bars, 1..1440"),
        ("GOLDRL_LEARNING_RULES_BEFORE_LISTING", "rules.json", "assumed:<16 hex digits>"),
        ("GOLDRL_LEARNING_RULES_BEFORE_LISTING", "assumed:XYZ", "refuse, earliest"),
    ],
)
def test_bad_settings_name_the_variable(clean_env, monkeypatch, name, value, accepted):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not valid")
    assert accepted in message


def test_default_cycle_keys_are_unchanged_and_policies_enter_the_keys():
    default = CycleConfig(rewards=("equity_change_after_costs",))
    [plain] = default.requests(SYMBOL, DAY, DAY + timedelta(days=1))
    assert plain.partition_key() == (
        "XAUT-USDT:1m:2025-03-06:2025-03-07:ta-v2:holdout-0.25:equity_change_after_costs"
    )
    thin = CycleConfig(
        rewards=("equity_change_after_costs",),
        gap_policy="carry_forward-2",
        rules_before_listing="earliest",
    )
    assert thin.gap_policy == "carry_forward:2"
    [request] = thin.requests(SYMBOL, DAY, DAY + timedelta(days=1))
    assert (request.gap_policy, request.rules_before_listing) == ("carry_forward:2", "earliest")
    assert request.partition_key() == (
        plain.partition_key() + ":gaps-carry_forward-2:rules-earliest"
    )
    with pytest.raises(ValueError, match="learning gap policy: gap policy 'holes' is unknown"):
        CycleConfig(gap_policy="holes")
    with pytest.raises(ValueError, match="learning rules before listing"):
        CycleConfig(rules_before_listing="latest")


def _thin_days(runtime) -> None:
    """Two 1m days of XAUT with one missing minute on the second day."""
    start = datetime(2025, 3, 6, tzinfo=UTC)
    times = [start + timedelta(minutes=i) for i in range(2 * 1440) if i != 1440 + 700]
    n = len(times)
    frame = pl.DataFrame(
        {
            "instrument": [SYMBOL] * n,
            "interval": ["1m"] * n,
            "open_time": times,
            "open": [2900.0] * n,
            "high": [2901.0] * n,
            "low": [2899.0] * n,
            "close": [2900.5] * n,
            "volume": [1.0] * n,
            "source": ["simulator"] * n,
        }
    )
    write_candles(runtime.db, frame)


def test_a_thin_day_blocks_a_refuse_cycle_and_is_used_under_a_gap_policy(clean_database):
    runtime = open_runtime()
    _thin_days(runtime)
    today = date(2025, 3, 8)
    refused = due_cycle(runtime, SYMBOL, CycleConfig(window_days=2), today=today)
    assert isinstance(refused, str)
    # Under refuse the thin 03-07 is not a complete day: the window would end on 03-06.
    assert "window ending 2025-03-06 lacks 1 complete day(s), first 2025-03-05" in refused
    config = CycleConfig(window_days=2, gap_policy="segments", rules_before_listing="earliest")
    plan = due_cycle(runtime, SYMBOL, config, today=today)
    assert isinstance(plan, CyclePlan), plan
    assert (plan.first_day, plan.last_day) == (date(2025, 3, 6), date(2025, 3, 7))
    assert all(r.partition_key().endswith(":gaps-segments:rules-earliest") for r in plan.requests)
