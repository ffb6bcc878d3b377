"""Performance drift of each market's champion, and the daily monitoring schedules.

``monitoring/performance_drift`` (per instrument) judges the champion's traded decisions since
it became champion against its own walk-forward evaluation, runs a change detector on the live
per-bar PnL and compares its fills' slippage with its cost model's
(``lib/drift/live_performance.py``). An alert fails the (non-blocking) check and records the
configured governance action (``on_alert``: ``retrain`` by default) once per kind, market,
champion and day; a rollout in progress is rolled back by a ``rollback`` or ``halt`` request,
and the learning loop answers a ``retrain`` request.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal

import dagster as dg

from goldrl_dagster.defs.keys import (
    FEATURE_DRIFT,
    MONITORING_GROUP,
    PERFORMANCE_DRIFT,
    PERFORMANCE_DRIFT_CHECK,
)
from goldrl_dagster.defs.market_data.partitions import (
    MARKET_INSTRUMENTS,
    market_instrument_day_partitions,
    market_instrument_partitions,
)
from goldrl_dagster.defs.market_data.schedules import daily_run_requests
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.drift.live_performance import live_performance_drift
from goldrl_dagster.lib.storage.drift_reports import request_governance_action
from goldrl_dagster.lib.storage.fill_quality import fill_slippage_bps
from goldrl_dagster.lib.storage.registry import (
    latest_own_report,
    list_champions,
    load_evaluation,
    load_model_record,
)
from goldrl_dagster.lib.storage.rollout_store import traded_path


class PerformanceDriftConfig(dg.Config):
    """The market's interval, thresholds and the action an alert asks for."""

    interval: str = "1m"
    min_bars: int = 240
    z_alert: float = -3.0
    fee_rate: float = 0.0005
    on_alert: Literal["none", "retrain", "rollback", "halt"] = "retrain"


@dg.asset(
    key=PERFORMANCE_DRIFT,
    group_name=MONITORING_GROUP,
    partitions_def=market_instrument_partitions,
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            PERFORMANCE_DRIFT_CHECK,
            asset=PERFORMANCE_DRIFT,
            description="The champion earns live what its backtest promised, without a drop.",
        )
    ],
)
def performance_drift(
    context: dg.AssetExecutionContext, config: PerformanceDriftConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """The champion's live PnL against its backtest and an online change detector on it."""
    runtime = storage.runtime()
    instrument = context.partition_key
    market = [c for c in list_champions(runtime.db)
              if (c.instrument, c.interval) == (instrument, config.interval)]  # fmt: skip
    if not market:
        note = f"no champion on {instrument} {config.interval}: nothing to judge"
        return dg.MaterializeResult(
            metadata={"status": "none", "note": note},
            check_results=[dg.AssetCheckResult(passed=True, metadata={"note": note})],
        )
    [champion] = market
    path = traded_path(runtime.db, instrument, champion.model_id, champion.updated_at)
    report_id = latest_own_report(runtime.db, champion.model_id)
    expected: list[float] = []
    if report_id is not None:
        report = load_evaluation(runtime.db, report_id)
        quantity = float(report.config.get("order_quantity") or 1.0)
        expected = [float(pnl) / quantity for _, pnl in report.daily_pnl.get("policy", [])]
    model = load_model_record(runtime.db, champion.model_id)
    assumed = float((model.card.get("cost_model") or {}).get("slippage_bps", 1.0))
    slippage = fill_slippage_bps(runtime.db, instrument, champion.model_id, champion.updated_at)
    verdict = live_performance_drift(
        path, expected, fee_rate=config.fee_rate, min_bars=config.min_bars,
        z_alert=config.z_alert, slippage_bps=slippage, expected_slippage_bps=assumed,
    )  # fmt: skip
    requested = None
    if verdict.status == "alert" and config.on_alert != "none":
        request, created = request_governance_action(
            runtime.db, kind=config.on_alert, instrument=instrument, interval=config.interval,
            model_id=champion.model_id, day=datetime.now(UTC).date(),
            reason="; ".join(verdict.reasons), requested_by="performance_drift",
            details=verdict.to_dict(),
        )  # fmt: skip
        requested = f"{request.kind} request {request.request_id}" + ("" if created else " (kept)")
    context.log.info(
        "%s %s champion %s: %s over %d bars%s", instrument, config.interval, champion.model_id,
        verdict.status, verdict.bars, f"; {requested}" if requested else "",
    )  # fmt: skip
    summary = verdict.to_dict()
    return dg.MaterializeResult(
        metadata={
            "champion": champion.model_id,
            "status": verdict.status,
            "bars": verdict.bars,
            "days": verdict.days,
            "fills": verdict.fills,
            "slippage_bps": verdict.slippage_bps,
            "z": verdict.z,
            "reasons": dg.MetadataValue.json(verdict.reasons),
            "governance_request": requested or "none",
        },
        check_results=[
            dg.AssetCheckResult(
                passed=verdict.status != "alert",
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"summary": dg.MetadataValue.json(summary)},
            )
        ],
    )


monitoring_performance_job = dg.define_asset_job(
    "monitoring_performance_job",
    selection=dg.AssetSelection.assets(PERFORMANCE_DRIFT),
    partitions_def=market_instrument_partitions,
    description="Each champion's live performance against its backtest.",
)


@dg.schedule(
    name="champion_performance_daily",
    cron_schedule="30 0 * * *",
    job=monitoring_performance_job,
    execution_timezone="UTC",
    # Reads goldrl's own rows and writes its own: safe from the first start.
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def champion_performance_daily(
    context: dg.ScheduleEvaluationContext,
) -> Iterator[dg.RunRequest]:
    """Each market's champion performance, once a day after the day's data settled."""
    scheduled = context.scheduled_execution_time or datetime.now(UTC)
    day = (scheduled.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    for instrument in MARKET_INSTRUMENTS:
        yield dg.RunRequest(run_key=f"performance|{instrument}|{day}", partition_key=instrument)


feature_drift_job = dg.define_asset_job(
    "feature_drift_job",
    selection=dg.AssetSelection.assets(FEATURE_DRIFT),
    partitions_def=market_instrument_day_partitions,
    description="One day's feature drift of each market's champion.",
)


@dg.schedule(
    name="feature_drift_daily",
    cron_schedule="40 0 * * *",
    job=feature_drift_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def feature_drift_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Yesterday's feature drift per instrument (after the daily feeds and their features)."""
    scheduled = context.scheduled_execution_time or datetime.now(UTC)
    return daily_run_requests(scheduled, key_prefix="feature_drift|")
