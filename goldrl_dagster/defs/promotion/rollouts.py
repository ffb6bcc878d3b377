"""Rollouts in Dagster: each market's rollout reviewed on live evidence, every few minutes.

The asset's materializations are the rollout's history in the UI (stage, every rule, the
transition made); the schedule keeps reviewing without anyone pressing a button. Live engines
never talk to Dagster: they follow the rows this writes (``goldrl_rollout`` notifications).
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg

from goldrl_dagster.defs.keys import MODELS_GROUP, PROMOTED_MODEL, ROLLOUT
from goldrl_dagster.defs.market_data.partitions import (
    MARKET_INSTRUMENTS,
    market_instrument_partitions,
)
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.promotion.tables import rules_markdown
from goldrl_dagster.lib.rollout.manage import review_and_move
from goldrl_dagster.lib.storage.rollout_store import market_assignment, rollouts_in_progress


class RolloutReviewConfig(dg.Config):
    """Which interval's rollout to review, and whether to move it."""

    interval: str = "1m"
    apply: bool = True


@dg.asset(
    key=ROLLOUT,
    group_name=MODELS_GROUP,
    deps=[PROMOTED_MODEL],
    partitions_def=market_instrument_partitions,
    kinds={"postgres"},
)
def rollout(
    context: dg.AssetExecutionContext, config: RolloutReviewConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """The market's rollout in progress, reviewed on live evidence and moved when it says so.

    Shadow advances to canary and canary to full (the challenger becomes champion) once the
    minimum evidence is in, Wald's SPRT confirms the edge the backtest promised over the
    champion and live behaviour agrees with the backtest's; a breach rolls back to the stable
    champion. Each transition is appended with its reason and evidence.
    """
    runtime = storage.runtime()
    instrument = context.partition_key
    current = [
        r for r in rollouts_in_progress(runtime.db)
        if (r.instrument, r.interval) == (instrument, config.interval)
    ]  # fmt: skip
    if not current:
        assignment = market_assignment(runtime.db, instrument, config.interval)
        note = f"no rollout in progress; {assignment.trading_model or 'no model'} trades"
        context.log.info("%s %s: %s", instrument, config.interval, note)
        return dg.MaterializeResult(metadata={"stage": "none", "note": note})
    [progress] = current
    outcome = review_and_move(
        runtime, progress, decided_by=f"dagster run {context.run.run_id[:8]}", apply=config.apply
    )
    verdict, moved = outcome.verdict, outcome.moved_to
    context.log.info(
        "rollout %d of %s (%s): %s%s", progress.rollout_id, progress.challenger, progress.stage,
        verdict.action, f" -> {moved}" if moved else "",
    )  # fmt: skip
    summary = verdict.to_dict()
    return dg.MaterializeResult(
        metadata={
            "rollout_id": progress.rollout_id,
            "challenger": progress.challenger,
            "stable_champion": progress.stable_champion,
            "stage": moved or progress.stage,
            "action": verdict.action,
            "reason": verdict.reason(),
            "bars": verdict.evidence.get("bars", 0),
            "rules": dg.MetadataValue.md(rules_markdown(summary["rules"])),
            "sprt": dg.MetadataValue.json(verdict.evidence.get("sprt") or {}),
        }
    )


rollout_review_job = dg.define_asset_job(
    "rollout_review_job",
    selection=dg.AssetSelection.assets(ROLLOUT),
    partitions_def=market_instrument_partitions,
    description="Review each market's rollout on live evidence; advance or roll back.",
)


@dg.schedule(
    name="rollout_review_every_5_minutes",
    job=rollout_review_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    # Reads and writes goldrl's own rows only: safe to run from the first start.
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def rollout_review_schedule(
    context: dg.ScheduleEvaluationContext, storage: GoldrlStorage
) -> Iterator[dg.RunRequest] | dg.SkipReason:
    """One review run per market with a rollout in progress; none in progress: skip the tick."""
    markets = [
        r for r in rollouts_in_progress(storage.runtime().db) if r.instrument in MARKET_INSTRUMENTS
    ]
    if not markets:
        return dg.SkipReason("no rollout in progress")
    tick = (context.scheduled_execution_time or datetime.now(UTC)).isoformat()
    return iter(
        dg.RunRequest(
            run_key=f"{r.rollout_id}|{tick}",
            partition_key=r.instrument,
            run_config={"ops": {"models__rollout": {"config": {"interval": r.interval}}}},
            tags={"goldrl/instrument": r.instrument, "goldrl/rollout": str(r.rollout_id)},
        )
        for r in markets
    )
