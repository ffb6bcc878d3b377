"""The learning loop's Dagster wiring carries the gap policy and rules before the listing."""

import os
from datetime import date

import pytest

from goldrl_dagster.defs.learning.sensors import candidate_requests
from goldrl_dagster.defs.resources import LearningLoop, resources
from goldrl_dagster.lib.learning.cycle import CyclePlan


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("GOLDRL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GOLDRL_HOME", str(tmp_path / "home"))


def _loop() -> LearningLoop:
    return resources().resources["learning"]


def test_the_resource_defaults_to_refuse_and_takes_the_settings(clean_env, monkeypatch):
    default = _loop().cycle_config()
    assert (default.gap_policy, default.rules_before_listing) == ("refuse", "refuse")
    monkeypatch.setenv("GOLDRL_LEARNING_GAP_POLICY", "segments")
    monkeypatch.setenv("GOLDRL_LEARNING_RULES_BEFORE_LISTING", "earliest")
    loop = _loop()
    config = loop.cycle_config()
    assert (config.gap_policy, config.rules_before_listing) == ("segments", "earliest")
    first, last = date(2025, 3, 6), date(2025, 3, 7)
    plan = CyclePlan(
        "XAUT-USDT", "1m", first, last, config.requests("XAUT-USDT", first, last), "test"
    )
    runs = candidate_requests(plan, "cycle-1", loop)
    assert len(runs) == 2
    assert all(r.partition_key.endswith(":gaps-segments:rules-earliest") for r in runs)
    assert all(r.run_key == f"cycle-1|{r.partition_key}" for r in runs)


def test_a_bad_value_in_the_resource_is_refused_naming_it():
    with pytest.raises(ValueError, match="learning gap policy"):
        LearningLoop(gap_policy="skip").cycle_config()
