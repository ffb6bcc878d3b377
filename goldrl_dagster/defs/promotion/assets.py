"""Promotion: move the champion pointer only when the challenger passes the gate."""

import dagster as dg

from goldrl_dagster.defs.keys import EVALUATION_REPORT, MODELS_GROUP, PROMOTED_MODEL
from goldrl_dagster.defs.lineage import upstream_value
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.promotion.gate import GateConfig, decide_promotion
from goldrl_dagster.lib.storage.registry import record_promotion_decision


class PromotionConfig(dg.Config):
    """Gate thresholds."""

    max_drawdown: float = 0.20
    min_trades: int = 1


@dg.asset(key=PROMOTED_MODEL, group_name=MODELS_GROUP, deps=[EVALUATION_REPORT], kinds={"postgres"})
def promoted_model(
    context: dg.AssetExecutionContext, config: PromotionConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """The champion model pointer, moved only when the latest evaluation passes the gate.

    Every decision is stored with each rule's value, threshold and verdict, promoted or not;
    the live engine is notified of a new champion (PostgreSQL NOTIFY ``goldrl_champion``).
    """
    runtime = storage.runtime()
    report_id = upstream_value(context, EVALUATION_REPORT, "report_id")
    with runtime.db.connect() as conn:
        row = conn.execute(
            "SELECT model_id, policy_metrics, baseline_metrics FROM evaluation_reports "
            "WHERE report_id = %s",
            (report_id,),
        ).fetchone()
    if row is None:
        raise dg.Failure(f"evaluation report {report_id} is not in the database")
    model_id, policy_metrics, baseline_metrics = row
    decision = decide_promotion(
        policy_metrics,
        baseline_metrics,
        GateConfig(max_drawdown=config.max_drawdown, min_trades=config.min_trades),
    )
    decision_id, previous = record_promotion_decision(
        runtime.db,
        model_id=model_id,
        report_id=report_id,
        promoted=decision.promoted,
        reasons=decision.reasons(),
    )
    champion = model_id if decision.promoted else previous
    verdict = "promoted" if decision.promoted else "rejected"
    context.log.info(
        "%s %s (decision %d); champion is %s", model_id, verdict, decision_id, champion
    )
    return dg.MaterializeResult(
        metadata={
            "decision_id": decision_id,
            "challenger": model_id,
            "promoted": decision.promoted,
            "champion": champion or "none",
            "previous_champion": previous or "none",
            "reasons": dg.MetadataValue.json(decision.reasons()),
        }
    )
