"""Judge a challenger: replay the market's champion on its folds, apply the gate, record it.

One path for the promotion asset, ``goldrl promote`` (and its ``--dry-run``) and the retrain
loop. The champion is re-evaluated on the challenger's dataset with the challenger's exact
walk-forward settings (folds, window, cost model); the replay is stored as an evaluation report
of the champion (reused when it already exists), and the decision names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from goldrl_dagster.lib.evaluation.model_evaluation import (
    EvaluationError,
    EvaluationSettings,
    evaluate_model,
    walk_forward_config_from_dict,
)
from goldrl_dagster.lib.promotion.gate import (
    GateConfig,
    GateDecision,
    GateRule,
    PromotionEvidence,
    decide_promotion,
)
from goldrl_dagster.lib.rollout.config import RolloutConfig
from goldrl_dagster.lib.rollout.manage import begin_rollout
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.registry import (
    EvaluationRecord,
    current_champion,
    load_evaluation,
    market_trials,
    record_promotion_decision,
)


@dataclass(frozen=True)
class PromotionVerdict:
    """A judged challenger.

    Attributes:
        challenger: The challenger's report.
        champion_model: The market's champion when judged (None: none yet).
        champion_report: The champion's replay on the challenger's folds (None: no champion, or
            the replay failed — then a failing rule says why).
        decision: The gate's verdict and rules.
        trials: Models ever evaluated on the market.
        decision_id: The stored decision, or None for a dry run.
        rollout_id: The staged rollout a passing challenger started (None: it became champion
            at once, was rejected, or this was a dry run).
    """

    challenger: EvaluationRecord
    champion_model: str | None
    champion_report: EvaluationRecord | None
    decision: GateDecision
    trials: int
    decision_id: int | None
    rollout_id: int | None = None

    @property
    def promoted(self) -> bool:
        """Whether the challenger passed (and, unless a dry run, became champion)."""
        return self.decision.promoted


def _cycle_matrix(runtime: Runtime, report_ids: Sequence[str]) -> np.ndarray | None:
    """Daily policy PnL of a cycle's candidates on their common days (days x candidates)."""
    if len(report_ids) < 2:
        return None
    series = []
    for report_id in report_ids:
        pairs = load_evaluation(runtime.db, report_id).daily_pnl.get("policy") or []
        series.append({str(day): float(pnl) for day, pnl in pairs})
    days = sorted(set.intersection(*(set(s) for s in series)))
    if not days:
        return None
    return np.array([[s[day] for s in series] for day in days], dtype=float)


def _say_calendars(
    challenger: EvaluationRecord, champion: EvaluationRecord, say: Callable[[str], None]
) -> None:
    """Say which calendar annualised both reports, and warn when they differ.

    The gate's statistics work on daily PnL and per-day Sharpe ratios, which no calendar
    changes; only the reports' annualised Sharpe and Sortino depend on it.
    """
    from goldrl_dagster.lib.evaluation.annualisation import describe_record

    ours = challenger.config.get("annualisation")
    theirs = champion.config.get("annualisation")
    line = describe_record(ours, challenger.interval)
    if (ours or {}).get("fingerprint") == (theirs or {}).get("fingerprint"):
        say(f"both reports annualised by {line}")
    else:
        say(f"calendars differ: challenger annualised by {line}, champion's replay by "
            f"{describe_record(theirs, champion.interval)} (the gate's daily statistics "
            "do not depend on it)")  # fmt: skip


def judge_challenger(
    runtime: Runtime,
    report_id: str,
    config: GateConfig,
    *,
    dry_run: bool = False,
    decided_by: str = "goldrl",
    cycle: Sequence[str] = (),
    on_progress: Callable[[str], None] | None = None,
    rollout: RolloutConfig | None = None,
) -> PromotionVerdict:
    """Judge one evaluated challenger against its market's champion and the baselines.

    Args:
        runtime: Database and artifact store.
        report_id: The challenger's evaluation report (on its own dataset).
        config: Gate thresholds.
        dry_run: Compute and return the verdict without recording it or moving the champion
            (the champion's replay is still stored: it is an evaluation like any other).
        decided_by: Who decided (stored with the decision).
        cycle: Reports of every candidate trained in the same cycle (the challenger included),
            for the probability of backtest overfitting.
        on_progress: Called with a line per step.
        rollout: Stage a passing challenger (shadow, canary, full) under these thresholds
            instead of making it champion at once. A market's first champion has nothing to
            roll back to and is made champion at once.

    Returns:
        The verdict (and the stored decision id unless a dry run).

    Raises:
        LookupError: If the report is unknown.
    """
    say = on_progress or (lambda _line: None)
    challenger = load_evaluation(runtime.db, report_id)
    market = (challenger.instrument, challenger.interval)
    champion_model = current_champion(runtime.db, *market)
    champion_report = None
    blocking: list[GateRule] = []
    if champion_model == challenger.model_id:
        blocking.append(GateRule("not_already_champion", False, None, None,
                                 f"{challenger.model_id} is already the champion"))  # fmt: skip
    elif champion_model is not None:
        say(f"replaying champion {champion_model} on {challenger.model_id}'s folds")
        try:
            replay = evaluate_model(
                runtime,
                champion_model,
                dataset_hash=challenger.dataset_hash,
                walk_forward=walk_forward_config_from_dict(challenger.config),
                settings=EvaluationSettings(
                    retrain_timesteps=int(challenger.config.get("retrain_timesteps", 2048))
                ),
            )
            champion_report = replay.record
            _say_calendars(challenger, champion_report, say)
        except EvaluationError as exc:
            # Fail closed: without the champion on the same evidence there is no comparison.
            reason = f"champion {champion_model} could not be replayed: {exc}"
            blocking.append(GateRule("champion_replay", False, None, None, reason))
    trials = market_trials(runtime.db, *market)
    evidence = PromotionEvidence(
        challenger=challenger,
        champion=champion_report,
        trials=[series for series in trials.values()],
        cycle=_cycle_matrix(runtime, cycle),
    )
    decision = decide_promotion(evidence, config)
    if blocking:
        rules = tuple(blocking) + tuple(r for r in decision.rules if r.rule != "beats_champion")
        decision = GateDecision(False, rules, decision.intervals)
    decision_id = rollout_id = None
    staged = rollout is not None and champion_report is not None and decision.promoted
    if not dry_run:
        decision_id, _ = record_promotion_decision(
            runtime.db,
            model_id=challenger.model_id,
            report_id=challenger.report_id,
            promoted=decision.promoted,
            reasons=decision.reasons(),
            champion_report_id=champion_report.report_id if champion_report else None,
            trials=max(len(trials), 1),
            decided_by=decided_by,
            move_champion=not staged,
        )
        if staged:
            assert rollout is not None and champion_report is not None
            started = begin_rollout(
                runtime, decision_id, challenger, champion_report, rollout, decided_by=decided_by
            )
            rollout_id = started.rollout_id
            say(f"{challenger.model_id} passed: rollout {rollout_id} starts in shadow")
    return PromotionVerdict(
        challenger=challenger,
        champion_model=champion_model,
        champion_report=champion_report,
        decision=decision,
        trials=max(len(trials), 1),
        decision_id=decision_id,
        rollout_id=rollout_id,
    )
