"""Daily feature drift of each market's champion against its training reference.

``monitoring/feature_drift`` is partitioned like the feature snapshots (instrument × UTC day).
For the partition's day it loads the market's champion, builds the champion's training
reference from the stored per-day ``feature_statistics`` of its feature set over the training
days of its dataset (the days before the held-out split; see
``goldrl_dagster.lib.drift.daily.training_reference_window``), judges that day's stored
feature rows (warm-up and missing-input rows excluded) with PSI, KS and the
out-of-distribution share, and stores one row per feature in ``feature_drift_reports``
(re-materializing replaces the day's rows of that champion).

The ``feature_drift`` check fails when a feature is at alert: WARN by default, ERROR (and so
blocking downstream) with ``blocking: true``. An alert also records the configured governance
action (``on_alert``: retrain by default, rollback, halt or none) in ``governance_requests``,
once per kind, market, champion and day. The market's next learning cycle answers a retrain
request; a rollback or halt request rolls back a rollout in progress (executing a halt on the
engine is the operator plane's).
"""

import base64
import math
from datetime import date
from typing import Any, Literal

import dagster as dg

from goldrl_dagster.defs.features.assets import SNAPSHOT_FEATURE_SETS
from goldrl_dagster.defs.keys import (
    FEATURE_DRIFT,
    FEATURE_DRIFT_CHECK,
    MONITORING_GROUP,
    feature_snapshots_key,
)
from goldrl_dagster.defs.market_data.partitions import (
    day_bounds,
    instrument_day,
    market_instrument_day_partitions,
)
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.drift.daily import (
    ReferenceWindow,
    alert_reason,
    daily_feature_drift,
    drift_plot_png,
    ood_only_features,
    status_counts,
    training_reference_window,
    usable_rows,
    worst_features,
    worst_features_markdown,
)
from goldrl_dagster.lib.drift.feature_drift import DriftReport, DriftThresholds
from goldrl_dagster.lib.drift.model_reference import TrainingReferenceError, first_held_out_bar
from goldrl_dagster.lib.features.spec import FeatureSetSpec, feature_set_by_fingerprint
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.drift_reports import (
    request_governance_action,
    write_feature_drift_report,
)
from goldrl_dagster.lib.storage.drift_store import read_training_reference
from goldrl_dagster.lib.storage.feature_store import read_feature_snapshots
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    current_champion,
    load_dataset_record,
    load_model_record,
)

REQUESTED_BY = "feature_drift"
"""``governance_requests.requested_by`` of this monitor's requests."""


class FeatureDriftConfig(dg.Config):
    """The drift monitor's severity, alert action and thresholds (see ``DriftThresholds``).

    ``blocking``: a drift alert fails the ``feature_drift`` check with ERROR severity, which
    blocks downstream assets of the run; by default it is a WARN an operator sees. ``on_alert``:
    the governance request an alert records (``none`` records nothing).
    """

    interval: str = "1m"
    blocking: bool = False
    on_alert: Literal["none", "retrain", "rollback", "halt"] = "retrain"
    psi_warn: float = 0.1
    psi_alert: float = 0.25
    ood_share_warn: float = 0.01
    ood_share_alert: float = 0.05
    min_count: int = 100

    def thresholds(self) -> DriftThresholds:
        """The status thresholds."""
        try:
            return DriftThresholds(
                psi_warn=self.psi_warn,
                psi_alert=self.psi_alert,
                ood_share_warn=self.ood_share_warn,
                ood_share_alert=self.ood_share_alert,
                min_count=self.min_count,
            )
        except ValueError as exc:
            raise dg.Failure(f"invalid feature drift config: {exc}") from exc


def _check(
    config: FeatureDriftConfig, passed: bool, metadata: dict[str, Any]
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=FEATURE_DRIFT,
        check_name=FEATURE_DRIFT_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if config.blocking else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def _nothing_judged(
    context: dg.AssetExecutionContext,
    config: FeatureDriftConfig,
    note: str,
    metadata: dict[str, Any] | None = None,
) -> dg.MaterializeResult:
    context.log.info(note)
    return dg.MaterializeResult(
        metadata={"note": note, "features_judged": 0} | (metadata or {}),
        check_results=[_check(config, True, {"note": note})],
    )


def _plot_markdown(report: DriftReport, thresholds: DriftThresholds, title: str) -> str:
    png = drift_plot_png(report, thresholds, title=title)
    return f"![feature drift](data:image/png;base64,{base64.b64encode(png).decode()})"


def _champion_feature_set(model_id: str, fingerprint: str) -> FeatureSetSpec:
    try:
        return feature_set_by_fingerprint(fingerprint)
    except ValueError as exc:
        raise dg.Failure(
            f"champion {model_id}'s feature set {fingerprint[:12]} is not one this code "
            f"computes: {exc}"
        ) from exc


def _reference_window(runtime: Runtime, dataset: DatasetRecord) -> ReferenceWindow:
    try:
        return training_reference_window(
            dataset.window_start, dataset.window_end, first_held_out_bar(runtime, dataset)
        )
    except (TrainingReferenceError, ValueError) as exc:
        raise dg.Failure(f"dataset {dataset.dataset_hash[:12]}: {exc}") from exc


@dg.asset(
    key=FEATURE_DRIFT,
    group_name=MONITORING_GROUP,
    deps=[feature_snapshots_key(spec.name, spec.version) for spec in SNAPSHOT_FEATURE_SETS],
    partitions_def=market_instrument_day_partitions,
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            FEATURE_DRIFT_CHECK,
            asset=FEATURE_DRIFT,
            # Blocks only when it fails with ERROR severity, i.e. under ``blocking: true``.
            blocking=True,
            description=(
                "No feature of the day is at drift alert against the champion's training "
                "reference (WARN by default; ERROR and blocking with config blocking: true)"
            ),
        )
    ],
)
def feature_drift(
    context: dg.AssetExecutionContext, config: FeatureDriftConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """The market champion's feature drift on one UTC day, one row per feature.

    The reference is the champion's feature set's ``feature_statistics`` over its dataset's
    training days (before the held-out split). The day's stored snapshots of that set are
    judged, warm-up and missing-input rows excluded; ``tow_*`` (weekly) features by their
    out-of-distribution share only. A feature at alert fails the ``feature_drift`` check and
    records the ``on_alert`` governance request (once per kind, market, champion and day), which
    the learning loop or the rollout review acts on. No champion: nothing is judged and the
    check passes with a note.
    """
    thresholds = config.thresholds()
    runtime = storage.runtime()
    db = runtime.db
    symbol, day_key = instrument_day(context)
    day = date.fromisoformat(day_key)
    market = f"{symbol} {config.interval}"

    model_id = current_champion(db, symbol, config.interval)
    if model_id is None:
        return _nothing_judged(
            context, config, f"no champion on {market}: no model to judge {day} against",
            {"champion": "none"},
        )  # fmt: skip
    model = load_model_record(db, model_id)
    dataset = load_dataset_record(db, model.dataset_hash)
    spec = _champion_feature_set(model_id, model.feature_fingerprint)
    window = _reference_window(runtime, dataset)
    try:
        reference = read_training_reference(
            db,
            instrument=dataset.instruments[0],
            interval=dataset.interval,
            fingerprint=spec.fingerprint,
            start_day=window.first_day,
            end_day=window.last_day,
        )
    except (LookupError, ValueError) as exc:
        raise dg.Failure(
            f"no training reference for champion {model_id} ({spec.name} v{spec.version}, "
            f"{window}): {exc}"
        ) from exc

    start, end = day_bounds(day_key)
    stored = read_feature_snapshots(db, symbol, config.interval, spec, start, end)
    rows = usable_rows(stored)
    base: dict[str, dg.RawMetadataValue] = {
        "champion": model_id,
        "market": market,
        "feature_set": f"{spec.name} v{spec.version}",
        "fingerprint": spec.fingerprint,
        "dataset_hash": dataset.dataset_hash,
        "reference_window": str(window),
        "reference_days": len(reference.days),
        "reference_basis": window.basis,
        "day_in_reference": window.first_day <= day <= window.last_day,
        "stored_rows": stored.height,
        "excluded_rows": stored.height - rows.height,
    }
    if rows.height == 0:
        write_feature_drift_report(
            db, None, instrument=symbol, interval=config.interval, day=day, model_id=model_id,
            fingerprint=spec.fingerprint, reference_first_day=window.first_day,
            reference_last_day=window.last_day,
        )  # fmt: skip
        return _nothing_judged(
            context, config,
            f"no usable {spec.name} v{spec.version} rows stored for {symbol} on {day} "
            f"(materialize {feature_snapshots_key(spec.name, spec.version).to_user_string()})",
            base,
        )  # fmt: skip

    report = daily_feature_drift(reference, rows, thresholds)
    written = write_feature_drift_report(
        db, report, instrument=symbol, interval=config.interval, day=day, model_id=model_id,
        fingerprint=spec.fingerprint, reference_first_day=window.first_day,
        reference_last_day=window.last_day,
    )  # fmt: skip
    counts = status_counts(report)
    alerts = list(report.by_status("alert"))
    worst = worst_features(report, 1)[0]

    action = "none (no alert)"
    request_meta: dict[str, dg.RawMetadataValue] = {}
    if alerts and config.on_alert == "none":
        action = "none (on_alert: none)"
    elif alerts:
        reason = alert_reason(
            report, instrument=symbol, interval=config.interval, day=day, model_id=model_id,
            window=window,
        )  # fmt: skip
        request, created = request_governance_action(
            db,
            kind=config.on_alert,
            instrument=symbol,
            interval=config.interval,
            model_id=model_id,
            day=day,
            reason=reason,
            requested_by=REQUESTED_BY,
            details={
                "alerts": {n: report.feature(n).psi for n in alerts},
                "fingerprint": spec.fingerprint,
                "reference": [window.first_day.isoformat(), window.last_day.isoformat()],
                "dagster_run_id": context.run.run_id,
            },
        )
        action = f"{request.kind} {'requested' if created else 'already requested'}"
        request_meta = {"governance_request_id": request.request_id}
        context.log.warning("%s: %s (request %d)", action, reason, request.request_id)

    context.log.info(
        "%s %s vs %s (%s, reference %s): %d ok, %d warn, %d alert; worst %s (PSI %.3g)",
        market, day, model_id, spec.name, window, counts["ok"], counts["warn"], counts["alert"],
        worst.name, worst.psi,
    )  # fmt: skip
    check_meta: dict[str, dg.RawMetadataValue] = {
        "alerts": dg.MetadataValue.json(alerts),
        "warnings": dg.MetadataValue.json(list(report.by_status("warn"))),
        "worst_feature": worst.name,
        "worst_status": worst.status,
        "worst_psi": worst.psi if math.isfinite(worst.psi) else "n/a",
        "worst_reasons": "; ".join(worst.reasons) or "none",
        "champion": model_id,
        "action": action,
    } | request_meta
    return dg.MaterializeResult(
        metadata=base
        | {
            "features_judged": written,
            "rows_judged": report.rows,
            "ok": counts["ok"],
            "warn": counts["warn"],
            "alert": counts["alert"],
            "status": report.status,
            "ood_only_features": dg.MetadataValue.json(list(ood_only_features(reference.names))),
            "worst_features": dg.MetadataValue.md(worst_features_markdown(report)),
            "psi_plot": dg.MetadataValue.md(
                _plot_markdown(report, thresholds, f"{market} {day} vs {model_id}")
            ),
            "action": action,
        }
        | request_meta,
        check_results=[_check(config, not alerts, check_meta)],
    )
