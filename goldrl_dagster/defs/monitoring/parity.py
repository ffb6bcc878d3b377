"""Backtest-versus-live parity of each market's live (or paper) trading, per UTC day.

``monitoring/backtest_live_parity`` (instrument × day, like the candles it reads) replays every
(session, model) window of the day's live decisions through the Nautilus backtest with the same
model, features recomputed from the stored candles by the same feature code, and the same cost
model, then compares bar by bar: decision agreement, feature-hash mismatches, fill price gaps,
and the live-minus-backtest PnL gap attributed to slippage, latency, missed or late bars,
feature mismatch, held or blocked orders and funding (``goldrl_dagster/lib/parity``). The
reports go to ``parity_reports`` / ``parity_report_bars`` (migration 0021; re-materializing a
day replaces its reports); the metadata carries the agreement, the attribution table and a plot
of both equity curves. The ``backtest_live_parity`` check warns when a decided bar's features
or decision differ from the backtest's. ``backtest_live_parity_daily`` runs yesterday's
partitions of every market after the day's candles are in (a day without decisions is a no-op).

Heavy imports (Nautilus, torch, polars) happen inside the asset, so the code location loads
fast.
"""

import base64
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from goldrl_dagster.defs.keys import CANDLES, MONITORING_GROUP
from goldrl_dagster.defs.market_data.partitions import (
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.market_data.schedules import daily_run_requests
from goldrl_dagster.defs.resources import GoldrlStorage

if TYPE_CHECKING:
    from goldrl_dagster.lib.parity.replay import ParityReport

BACKTEST_LIVE_PARITY = dg.AssetKey(["monitoring", "backtest_live_parity"])
BACKTEST_LIVE_PARITY_CHECK = "backtest_live_parity"


class ParityConfig(dg.Config):
    """The market's interval and, optionally, the backtest's full position.

    ``order_quantity``: base units of a full position in the replay; unset, each window uses
    the largest position live held in it (the live engine's order quantity).
    """

    interval: str = "1m"
    order_quantity: float | None = None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def attribution_markdown(reports: "list[ParityReport]") -> str:
    """The PnL gap of each window by cause, as a Markdown table (quote currency)."""
    from goldrl_dagster.lib.parity.compare import CAUSES

    header = "| session | model | live PnL | backtest PnL | gap | " + " | ".join(CAUSES) + " |"
    lines = [header, "|" + " --- |" * (5 + len(CAUSES))]
    for report in reports:
        c = report.comparison
        cells = [f"{c.attribution[k]:+.6f}" for k in CAUSES]
        lines.append(
            f"| {report.session_id[:20]} | {report.model_id} | {c.live_pnl:+.6f} | "
            f"{c.backtest_pnl:+.6f} | {c.pnl_gap:+.6f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _differing_bars_markdown(reports: "list[ParityReport]", limit: int = 20) -> str:
    lines = ["| bar | session | status | live | backtest | features | cause |",
             "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    shown = 0
    for report in reports:
        for when, bar in zip(report.open_times, report.comparison.bars, strict=True):
            if bar.agree is not False and bar.feature_match is not False and bar.cause is None:
                continue
            if shown == limit:
                lines.append(f"| … | more in parity_report_bars | | | | | |")  # noqa: F541
                return "\n".join(lines)
            features = {True: "same", False: "DIFFER", None: "n/a"}[bar.feature_match]
            lines.append(
                f"| {when.isoformat()} | {report.session_id[:16]} | {bar.status} | "
                f"{bar.live_target} | {bar.backtest_target} | {features} | {bar.cause or ''} |"
            )
            shown += 1
    return "\n".join(lines) if shown else "no bar differs"


def _plots_markdown(reports: "list[ParityReport]", limit: int = 3) -> str:
    from goldrl_dagster.lib.parity.plots import equity_curves_png

    # The largest windows first: they say the most.
    chosen = sorted(reports, key=lambda r: -len(r.open_times))[:limit]
    return "\n\n".join(
        f"![equity curves {r.session_id}](data:image/png;base64,"
        f"{base64.b64encode(equity_curves_png(r)).decode()})"
        for r in chosen
    )


def _totals(reports: "list[ParityReport]") -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(r.comparison.summary[key]) for r in reports)

    compared, identical = total("compared_bars"), total("identical_bars")
    return {
        "compared_bars": compared,
        "identical_bars": identical,
        "agreement_pct": 100.0 * total("agreeing_bars") / compared if compared else None,
        "identical_agreement_pct": (
            100.0 * total("identical_agreeing_bars") / identical if identical else None
        ),
        "feature_mismatch_bars": total("feature_mismatch_bars"),
        "missed_bars": total("missed_bars"),
        "live_decisions": total("live_decisions"),
    }


@dg.asset(
    key=BACKTEST_LIVE_PARITY,
    group_name=MONITORING_GROUP,
    deps=[CANDLES],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres", "nautilus"},
    check_specs=[
        dg.AssetCheckSpec(
            BACKTEST_LIVE_PARITY_CHECK,
            asset=BACKTEST_LIVE_PARITY,
            description=(
                "Every bar live decided that day has the backtest's features (observation hash) "
                "and decision (WARN otherwise)"
            ),
        )
    ],
)
def backtest_live_parity(
    context: dg.AssetExecutionContext, config: ParityConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """The day's live decisions replayed through the backtest and compared bar by bar."""
    from goldrl_dagster.lib.parity.compare import CAUSES
    from goldrl_dagster.lib.parity.replay import ParityError, parity_reports_for_day
    from goldrl_dagster.lib.parity.store import write_parity_reports

    runtime = storage.runtime()
    symbol, day_key = instrument_day(context)
    day = date.fromisoformat(day_key)
    try:
        reports = parity_reports_for_day(
            runtime, symbol, config.interval, day, order_quantity=config.order_quantity
        )
    except ParityError as exc:
        raise dg.Failure(f"{symbol} {config.interval} {day}: {exc}") from exc
    ids = write_parity_reports(runtime.db, symbol, config.interval, day, reports)
    if not reports:
        note = f"no live decisions on {symbol} {config.interval} on {day}: nothing to compare"
        context.log.info(note)
        return dg.MaterializeResult(
            metadata={"note": note, "reports": 0},
            check_results=[dg.AssetCheckResult(passed=True, metadata={"note": note})],
        )
    totals = _totals(reports)
    gap = {k: sum(r.comparison.attribution[k] for r in reports) for k in CAUSES}
    mismatched = [r.session_id for r in reports if r.status != "match"]
    context.log.info(
        "%s %s %s: %d window(s), %d decision(s); agreement %s (identical bars %s), %d feature "
        "mismatch(es), %d missed bar(s)", symbol, config.interval, day, len(reports),
        totals["live_decisions"], _pct(totals["agreement_pct"]),
        _pct(totals["identical_agreement_pct"]), totals["feature_mismatch_bars"],
        totals["missed_bars"],
    )  # fmt: skip
    passed = totals["feature_mismatch_bars"] == 0 and totals["agreement_pct"] in (None, 100.0)
    return dg.MaterializeResult(
        metadata={
            "reports": len(reports),
            "report_ids": dg.MetadataValue.json(ids),
            "sessions": dg.MetadataValue.json(sorted({r.session_id for r in reports})),
            "models": dg.MetadataValue.json(sorted({r.model_id for r in reports})),
            "live_decisions": totals["live_decisions"],
            "compared_bars": totals["compared_bars"],
            "identical_bars": totals["identical_bars"],
            "agreement_pct": totals["agreement_pct"],
            "identical_agreement_pct": totals["identical_agreement_pct"],
            "feature_mismatch_bars": totals["feature_mismatch_bars"],
            "missed_bars": totals["missed_bars"],
            "live_pnl": sum(r.comparison.live_pnl for r in reports),
            "backtest_pnl": sum(r.comparison.backtest_pnl for r in reports),
            "pnl_gap": sum(r.comparison.pnl_gap for r in reports),
            "attribution": dg.MetadataValue.json(gap),
            "attribution_table": dg.MetadataValue.md(attribution_markdown(reports)),
            "differing_bars": dg.MetadataValue.md(_differing_bars_markdown(reports)),
            "mismatched_sessions": dg.MetadataValue.json(mismatched),
            "equity_curves": dg.MetadataValue.md(_plots_markdown(reports)),
        },
        check_results=[
            dg.AssetCheckResult(
                passed=passed,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "feature_mismatch_bars": totals["feature_mismatch_bars"],
                    "agreement_pct": totals["agreement_pct"]
                    if totals["agreement_pct"] is not None
                    else "n/a",
                },
            )
        ],
    )


backtest_live_parity_job = dg.define_asset_job(
    "backtest_live_parity_job",
    selection=dg.AssetSelection.assets(BACKTEST_LIVE_PARITY),
    partitions_def=market_instrument_day_partitions,
    description="One day's live decisions of each market replayed through the backtest.",
)


@dg.schedule(
    name="backtest_live_parity_daily",
    cron_schedule="50 0 * * *",
    job=backtest_live_parity_job,
    execution_timezone="UTC",
    # Reads goldrl's own rows and writes its own: safe from the first start.
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def backtest_live_parity_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """Yesterday's parity report per instrument (after the day's candles are stored)."""
    scheduled = context.scheduled_execution_time or datetime.now(UTC)
    return daily_run_requests(scheduled, key_prefix="backtest_live_parity|")
