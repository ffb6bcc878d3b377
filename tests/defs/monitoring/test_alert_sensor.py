"""The SLO alert sensor: a failed asset check in the Dagster instance reaches the webhook once."""

from __future__ import annotations

import dagster as dg
import pytest
from alert_webhook_support import local_webhook

from goldrl_dagster.defs.monitoring.alerts import slo_alert_sensor
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.config import SettingsError, load_settings


@dg.asset(key=["market", "alert_probe"])
def alert_probe() -> int:
    return 1


@dg.asset_check(asset=alert_probe, name="probe_quality")
def probe_quality(alert_probe: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=alert_probe > 1, description="value 1, expected > 1")


@dg.asset_check(asset=alert_probe, name="probe_fine")
def probe_fine(alert_probe: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


DEFS = dg.Definitions(assets=[alert_probe], asset_checks=[probe_quality, probe_fine])


def _tick(instance: dg.DagsterInstance) -> dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, resources={"storage": GoldrlStorage()}, definitions=DEFS
    )
    return slo_alert_sensor(context)


def test_a_failed_check_is_posted_once_and_a_passing_one_never(
    clean_database, monkeypatch, tmp_path
):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance, local_webhook() as hook:
        monkeypatch.setenv("GOLDRL_ALERT_WEBHOOK_URL", hook.url)
        quiet = _tick(instance)  # nothing evaluated yet: quiet
        assert hook.posts == [] and "0 alert(s) firing" in str(quiet.skip_message)
        dg.materialize([alert_probe, probe_quality, probe_fine], instance=instance,
                       raise_on_error=False)  # fmt: skip
        first = _tick(instance)
        second = _tick(instance)
        assert hook.texts() == [
            "[goldrl PAGE] failed_asset_check: check probe_quality on market/alert_probe "
            "failed (ERROR): value 1, expected > 1"
        ]
        assert "1 posted" in str(first.skip_message)
        assert "1 already posted" in str(second.skip_message)
        assert "s3cr3tT0ken" not in str(first.skip_message) + str(second.skip_message)


def test_the_webhook_setting_is_validated_without_showing_it(monkeypatch):
    monkeypatch.setenv("GOLDRL_ALERT_WEBHOOK_URL", "hooks.slack.com/services/T0/B0/s3cr3t")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "GOLDRL_ALERT_WEBHOOK_URL" in str(refused.value) and "s3cr3t" not in str(refused.value)
    monkeypatch.setenv("GOLDRL_ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/s3cr3t")
    settings = load_settings()
    assert settings.alert_webhook_url.endswith("s3cr3t") and "s3cr3t" not in repr(settings)
    monkeypatch.delenv("GOLDRL_ALERT_WEBHOOK_URL")
    assert load_settings().alert_webhook_url is None
