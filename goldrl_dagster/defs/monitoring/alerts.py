"""The SLO alert sensor: burn rates and health conditions, posted to a webhook.

Every tick evaluates the SLOs and conditions of ``lib/alerts`` (decision latency and ingestion
lag from the engines' heartbeats, order reject rate, stale heartbeats, failed reconciliation,
open candle gaps) plus the asset checks whose latest evaluation failed (read from the Dagster
instance), then deduplicates, rate-limits and posts them to ``GOLDRL_ALERT_WEBHOOK_URL``
(without one, alerts are only recorded in ``alert_state``). The URL is never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.alerts.conditions import FailedCheck, evaluate_alerts
from goldrl_dagster.lib.alerts.dispatch import DispatchReport, RateLimit, dispatch
from goldrl_dagster.lib.alerts.webhook import WebhookSender
from goldrl_dagster.lib.config import load_settings

SENSOR_INTERVAL_SECONDS = 60


def failed_asset_checks(
    instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey]
) -> list[FailedCheck]:
    """The checks among ``check_keys`` whose latest evaluation failed, with its severity."""
    if not check_keys:
        return []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    failed = []
    for key, record in sorted(latest.items(), key=lambda item: item[0].to_user_string()):
        evaluation = record.evaluation
        if evaluation is None or evaluation.passed:
            continue
        failed.append(
            FailedCheck(
                asset=key.asset_key.to_user_string(),
                check=key.name,
                severity=evaluation.severity.value,
                partition=record.partition,
                description=evaluation.description or "",
            )
        )
    return failed


def run_alerts(
    context: dg.SensorEvaluationContext,
    storage: GoldrlStorage,
    check_keys: list[dg.AssetCheckKey],
    *,
    now: datetime | None = None,
    rate_limit: RateLimit | None = None,
) -> DispatchReport:
    """One evaluation: alerts firing now, deduplicated, rate-limited and posted."""
    settings = load_settings()
    runtime = storage.runtime()
    when = now or datetime.now(UTC)
    alerts = evaluate_alerts(runtime.db, when, failed_asset_checks(context.instance, check_keys))
    sender = WebhookSender(settings.alert_webhook_url) if settings.alert_webhook_url else None
    report = dispatch(runtime.db, alerts, sender, now=when, rate_limit=rate_limit)
    for alert in alerts:
        context.log.warning("%s", alert.text())
    target = sender.where if sender is not None else "no webhook (GOLDRL_ALERT_WEBHOOK_URL unset)"
    context.log.info("%s; to %s", report.describe(), target)
    return report


def _check_keys(context: dg.SensorEvaluationContext) -> list[dg.AssetCheckKey]:
    repository = context.repository_def
    if repository is None:
        return []
    return sorted(repository.asset_graph.asset_check_keys, key=lambda k: k.to_user_string())


@dg.sensor(
    name="slo_alert_sensor",
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the SLOs (burn rates of decision latency, ingestion lag and order "
    "rejects) and the health conditions (stale heartbeat, failed reconciliation, open candle "
    "gaps, failed asset checks); posts new alerts to GOLDRL_ALERT_WEBHOOK_URL, deduplicated "
    "and rate-limited.",
)
def slo_alert_sensor(
    context: dg.SensorEvaluationContext, storage: GoldrlStorage
) -> dg.SkipReason:
    """Evaluate the SLOs and conditions and post what is new."""
    report = run_alerts(context, storage, _check_keys(context))
    return dg.SkipReason(report.describe())
