"""Start, review and roll back rollouts: the calls the Dagster jobs and the CLI make."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.rollout.config import RolloutConfig
from goldrl_dagster.lib.rollout.review import StageVerdict, judge_stage
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.drift_reports import (
    GovernanceRequest,
    mark_governance_request_handled,
    read_governance_requests,
)
from goldrl_dagster.lib.storage.registry import EvaluationRecord, load_evaluation
from goldrl_dagster.lib.storage.rollout_store import (
    Rollout,
    RolloutError,
    rollouts_in_progress,
    shadow_path,
    start_rollout,
    traded_path,
    transition_rollout,
)

_DAY_MS = 86_400_000


def bars_per_day(interval: str) -> float:
    """Bars in a UTC day of a BingX interval.

    Raises:
        ValueError: For an interval without a fixed length.
    """
    if interval not in INTERVAL_MS:
        raise ValueError(f"interval {interval!r} has no fixed bar length")
    return _DAY_MS / INTERVAL_MS[interval]


def backtest_edge(challenger: EvaluationRecord, champion: EvaluationRecord) -> float | None:
    """The per-bar excess over the champion, per unit of base, that the backtest showed.

    The mean daily net PnL excess on the same days, divided by the evaluated order quantity and
    the bars per day: the mean the live SPRT tests for. None when not positive or not
    measurable.
    """
    ours = {d: float(v) for d, v in challenger.daily_pnl.get("policy", [])}
    theirs = {d: float(v) for d, v in champion.daily_pnl.get("policy", [])}
    days = sorted(set(ours) & set(theirs))
    quantity = float(challenger.config.get("order_quantity") or 0.0)
    if not days or quantity <= 0:
        return None
    excess = float(np.mean([ours[d] - theirs[d] for d in days]))
    edge = excess / quantity / bars_per_day(challenger.interval)
    return edge if edge > 0 else None


def begin_rollout(
    runtime: Runtime,
    decision_id: int,
    challenger: EvaluationRecord,
    champion: EvaluationRecord,
    config: RolloutConfig,
    *,
    decided_by: str,
) -> Rollout:
    """Start the shadow stage, testing live for the edge the backtest showed over the champion.

    Raises:
        RolloutError: If the backtest shows no positive edge to test for, or the store refuses.
    """
    edge = config.edge or backtest_edge(challenger, champion)
    if edge is None:
        raise RolloutError(
            f"{challenger.model_id} showed no positive excess over {champion.model_id} per bar "
            "in the backtest: nothing for the live test to confirm"
        )
    stored = replace(config, edge=edge)
    return start_rollout(
        runtime.db,
        decision_id=decision_id,
        canary_fraction=stored.canary_fraction,
        config=stored.to_dict(),
        decided_by=decided_by,
        reason=(
            f"passed the promotion gate (decision {decision_id}); shadow beside "
            f"{champion.model_id}, testing for {edge:.4g} USDT per unit per bar"
        ),
    )


@dataclass(frozen=True)
class ReviewOutcome:
    """One reviewed rollout."""

    rollout: Rollout
    verdict: StageVerdict
    moved_to: str | None


def _decision_report(runtime: Runtime, rollout: Rollout) -> EvaluationRecord:
    with runtime.db.connect() as conn:
        row = conn.execute(
            "SELECT report_id FROM promotion_decisions WHERE decision_id = %s",
            (rollout.decision_id,),
        ).fetchone()
    assert row is not None  # rollouts reference their decision
    return load_evaluation(runtime.db, row[0])


def review_rollout(
    runtime: Runtime, rollout: Rollout, *, drift_alerts: tuple[str, ...] = ()
) -> StageVerdict:
    """Judge a rollout's current stage on the live decisions recorded so far."""
    since = rollout.stage_started_at
    if rollout.stage == "shadow":
        challenger = shadow_path(runtime.db, rollout.rollout_id, rollout.challenger)
        # Only the sessions following the rollout: a pinned paper session of the same model on
        # another account is not the champion's evidence.
        champion = traded_path(
            runtime.db, rollout.instrument, rollout.stable_champion, since, rollout.rollout_id
        )
    else:
        challenger = traded_path(
            runtime.db, rollout.instrument, rollout.challenger, since, rollout.rollout_id
        )
        champion = shadow_path(runtime.db, rollout.rollout_id, rollout.stable_champion)
    report = _decision_report(runtime, rollout)
    return judge_stage(
        rollout,
        challenger,
        champion,
        backtest=report.diagnostics,
        bars_per_day=bars_per_day(rollout.interval),
        drift_alerts=drift_alerts,
    )


def pending_rollback_requests(runtime: Runtime, rollout: Rollout) -> list[GovernanceRequest]:
    """Unhandled ``rollback``/``halt`` requests on the rollout's market since its stage began.

    A drift monitor configured to roll back (or halt) asks for it with a governance request;
    during a rollout that request is a breach: the challenger goes, the stable champion stays.
    """
    return [
        request
        for request in read_governance_requests(
            runtime.db, instrument=rollout.instrument, interval=rollout.interval, pending_only=True
        )
        if request.kind in ("rollback", "halt") and request.created_at >= rollout.stage_started_at
    ]


def review_and_move(
    runtime: Runtime, rollout: Rollout, *, decided_by: str, apply: bool = True
) -> ReviewOutcome:
    """Review one rollout (with the market's pending rollback requests) and move it if due."""
    requests = pending_rollback_requests(runtime, rollout)
    alerts = tuple(f"{r.requested_by} asked to {r.kind}: {r.reason}" for r in requests)
    verdict = review_rollout(runtime, rollout, drift_alerts=alerts)
    moved = None
    if apply and verdict.to_stage is not None:
        try:
            transition_rollout(
                runtime.db, rollout.rollout_id, verdict.to_stage, reason=verdict.reason(),
                decided_by=decided_by, evidence=verdict.to_dict(),
            )  # fmt: skip
            moved = verdict.to_stage
        except RolloutError:
            # Moved by someone else meanwhile (an operator, another review): theirs stands.
            moved = None
        if moved == "rolled_back":
            for request in requests:
                mark_governance_request_handled(
                    runtime.db, request.request_id,
                    f"rolled back rollout {rollout.rollout_id} of {rollout.challenger}",
                )  # fmt: skip
    return ReviewOutcome(rollout, verdict, moved)


def review_rollouts(
    runtime: Runtime, *, decided_by: str, apply: bool = True
) -> list[ReviewOutcome]:
    """Review every rollout in progress and move those whose evidence says so.

    Args:
        runtime: Database and artifacts.
        decided_by: Recorded with every transition.
        apply: Move the rollouts (False: report the verdicts only).

    Returns:
        One outcome per rollout in progress.
    """
    return [
        review_and_move(runtime, rollout, decided_by=decided_by, apply=apply)
        for rollout in rollouts_in_progress(runtime.db)
    ]
