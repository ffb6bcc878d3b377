"""Plan and judge learning cycles: what to train when a day completes, and which candidate wins.

A cycle starts when a market's newest complete day is newer than its last cycle's and the
rolling window ending that day is complete (every bar of every day stored), or when a pending
``retrain`` governance request (e.g. from the drift monitor) asks for one. Its candidates are
dataset requests over the window, one per feature set x reward; each is built, trained and
evaluated by the ordinary assets. When every candidate has its evaluation, the candidate with
the best mean daily net PnL is judged by the promotion gate, with all of them as the cycle (the
probability of backtest overfitting) and as trials on the market (the deflated Sharpe ratio).

Thin markets: a cycle's datasets may use a gap policy (``segments`` or ``carry_forward:N``)
and contract rules before the listing (``earliest`` or ``assumed:<id>``); with a gap policy
other than ``refuse`` a window day counts when it has any bar (the dataset build decides what
its holes allow), otherwise only days with every bar count, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np

from goldrl_dagster.lib.datasets.contract_rules import parse_rules_policy
from goldrl_dagster.lib.datasets.gap_policy import REFUSE, GapPolicy
from goldrl_dagster.lib.datasets.request import (
    DEFAULT_HOLDOUT_FRACTION,
    DatasetRequest,
    parse_feature_set_ref,
)
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.rl.rewards import reward_shaping
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.cycle_store import (
    LearningCycle,
    candidate_reports,
    complete_days,
    finish_cycle,
    latest_cycle,
    newest_bar_day,
)
from goldrl_dagster.lib.storage.drift_reports import read_governance_requests
from goldrl_dagster.lib.storage.registry import load_evaluation

if TYPE_CHECKING:
    # The gate pulls SciPy, arch and the evaluation stack (Nautilus, torch): imported when a
    # cycle is judged, not when the code location only plans cycles.
    from goldrl_dagster.lib.promotion.gate import GateConfig
    from goldrl_dagster.lib.promotion.judge import PromotionVerdict
    from goldrl_dagster.lib.rollout.config import RolloutConfig

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class CycleConfig:
    """What a cycle trains.

    Attributes:
        interval: Bar interval of the market.
        window_days: Days in the rolling window (the last one is the newly complete day).
        feature_sets: Feature-set references (``ta-v2``, ``core:1``) of the candidates.
        rewards: Named rewards of the candidates (see ``lib/rl/rewards.py``).
        holdout_fraction: Share of each dataset held out for evaluation.
        gap_policy: Gap policy of the candidates' datasets (``refuse``, ``segments``,
            ``carry_forward:N``).
        rules_before_listing: Contract rules before the listing (``refuse``, ``earliest``,
            ``assumed:<id>``).
    """

    interval: str = "1m"
    window_days: int = 30
    feature_sets: tuple[str, ...] = ("ta-v2",)
    rewards: tuple[str, ...] = ("equity_change_after_costs", "turnover_penalised")
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION
    gap_policy: str = REFUSE
    rules_before_listing: str = REFUSE

    def __post_init__(self) -> None:
        """Validate the search space.

        Raises:
            ValueError: Naming the first unusable setting.
        """
        if self.interval not in INTERVAL_MS:
            raise ValueError(f"interval {self.interval!r} has no fixed bar length")
        if not isinstance(self.window_days, int) or not 2 <= self.window_days <= 3660:
            raise ValueError(
                f"window_days must be an integer in [2, 3660], got {self.window_days!r}"
            )
        if not self.feature_sets or not self.rewards:
            raise ValueError("a cycle needs at least one feature set and one reward")
        for reward in self.rewards:
            reward_shaping(reward)
        for ref in self.feature_sets:
            parse_feature_set_ref(ref)
        try:
            gaps = GapPolicy.parse(self.gap_policy).spelling
        except ValueError as exc:
            raise ValueError(f"learning gap policy: {exc}") from exc
        try:
            rules = parse_rules_policy(self.rules_before_listing)
        except ValueError as exc:
            raise ValueError(f"learning rules before listing: {exc}") from exc
        object.__setattr__(self, "gap_policy", gaps)
        object.__setattr__(self, "rules_before_listing", rules)

    @property
    def min_bars_per_day(self) -> int:
        """Bars a window day needs: all of them under ``refuse``, one under another policy."""
        return self.bars_per_day if self.gap_policy == REFUSE else 1

    @property
    def bars_per_day(self) -> int:
        """Bars of a complete day."""
        return _DAY_MS // INTERVAL_MS[self.interval]

    def requests(self, instrument: str, first_day: date, last_day: date) -> list[DatasetRequest]:
        """The cycle's candidates: one dataset request per feature set x reward.

        Raises:
            ValueError: If a feature set is unknown.
        """
        out = []
        for ref in self.feature_sets:
            name, version = parse_feature_set_ref(ref)
            for reward in self.rewards:
                kwargs: dict[str, object] = {"feature_set": name, "reward": reward}
                if self.gap_policy != REFUSE:
                    kwargs["gap_policy"] = self.gap_policy
                if self.rules_before_listing != REFUSE:
                    kwargs["rules_before_listing"] = self.rules_before_listing
                if version is not None:
                    kwargs["feature_set_version"] = version
                out.append(
                    DatasetRequest(
                        instrument=instrument,
                        interval=self.interval,
                        start_day=first_day,
                        end_day=last_day,
                        holdout_fraction=self.holdout_fraction,
                        **kwargs,
                    )
                )
        return out


@dataclass(frozen=True)
class CyclePlan:
    """A cycle that is due (``retrain_requests``: the pending requests it answers)."""

    instrument: str
    interval: str
    first_day: date
    last_day: date
    requests: list[DatasetRequest]
    reason: str
    retrain_requests: tuple[int, ...] = ()


def due_cycle(
    runtime: Runtime, instrument: str, config: CycleConfig, *, today: date
) -> CyclePlan | str:
    """The market's cycle that is due now, or why none is.

    Args:
        runtime: Database.
        instrument: The market's instrument.
        config: The search space and window.
        today: The current UTC day (only days before it can be complete).

    Returns:
        The plan, or a sentence saying why nothing is due.
    """
    newest = newest_bar_day(runtime.db, instrument, config.interval)
    if newest is None:
        return f"{instrument}: no {config.interval} bars stored"
    since = min(today, newest) - timedelta(days=config.window_days + 7)
    days = [d for d in complete_days(runtime.db, instrument, config.interval, since,
                                      config.min_bars_per_day) if d < today]  # fmt: skip
    usable = "complete" if config.gap_policy == REFUSE else "traded"
    if not days:
        return f"{instrument}: no {usable} {config.interval} day before {today}"
    last = days[-1]
    first = last - timedelta(days=config.window_days - 1)
    window = {first + timedelta(days=i) for i in range(config.window_days)}
    missing = sorted(window - set(days))
    if missing:
        return (
            f"{instrument}: the {config.window_days}-day window ending {last} lacks "
            f"{len(missing)} {usable} day(s), first {missing[0]}"
        )
    previous = latest_cycle(runtime.db, instrument, config.interval)
    retrain = [
        r for r in read_governance_requests(
            runtime.db, instrument=instrument, interval=config.interval, pending_only=True
        ) if r.kind == "retrain"
    ]  # fmt: skip
    if previous is not None and previous.last_day >= last:
        return f"{instrument}: the cycle for {last} exists ({previous.cycle_id})"
    reason = f"new complete day {last}"
    if retrain:
        reason += f"; {len(retrain)} retrain request(s): {retrain[0].reason}"
    return CyclePlan(instrument, config.interval, first, last,
                     config.requests(instrument, first, last), reason,
                     tuple(r.request_id for r in retrain))  # fmt: skip


def best_candidate(reports: list[str], runtime: Runtime) -> str:
    """The report with the best mean daily net PnL (ties: report id), the cycle's challenger."""

    def score(report_id: str) -> tuple[float, str]:
        pairs = load_evaluation(runtime.db, report_id).daily_pnl.get("policy") or []
        mean = float(np.mean([p[1] for p in pairs])) if pairs else float("-inf")
        return (-mean, report_id)

    return min(reports, key=score)


@dataclass(frozen=True)
class CycleJudgement:
    """A judged cycle (or why it cannot be judged yet)."""

    cycle: LearningCycle
    ready: bool
    missing: list[str]
    verdict: PromotionVerdict | None = None


def judge_cycle(
    runtime: Runtime,
    cycle: LearningCycle,
    gate: GateConfig,
    *,
    rollout: RolloutConfig | None,
    decided_by: str,
    give_up: bool = False,
) -> CycleJudgement:
    """Judge a cycle's best candidate once every candidate has been evaluated.

    Args:
        runtime: Database and artifacts.
        cycle: The cycle.
        gate: Gate thresholds.
        rollout: Stage a passing challenger under these thresholds (None: at once).
        decided_by: Recorded with the decision.
        give_up: Judge with the candidates evaluated so far (the others failed or timed out);
            with none, the cycle is closed without a decision.

    Returns:
        The judgement (``ready`` False while candidates are still missing).
    """
    found = candidate_reports(runtime.db, cycle)
    missing = [key for key, report in found.items() if report is None]
    reports = [report for report in found.values() if report is not None]
    if missing and not give_up:
        return CycleJudgement(cycle, False, missing)
    if not reports:
        finish_cycle(runtime.db, cycle.cycle_id, decision_id=None,
                     outcome=f"no candidate was evaluated ({len(missing)} missing)")  # fmt: skip
        return CycleJudgement(cycle, True, missing)
    from goldrl_dagster.lib.promotion.judge import judge_challenger

    challenger = best_candidate(reports, runtime)
    verdict = judge_challenger(
        runtime, challenger, gate, decided_by=decided_by, cycle=reports, rollout=rollout
    )
    failed = [rule.rule for rule in verdict.decision.failed()]
    if verdict.rollout_id is not None:
        outcome = f"{verdict.challenger.model_id} passed: rollout {verdict.rollout_id} in shadow"
    elif verdict.promoted:
        outcome = f"{verdict.challenger.model_id} promoted (first champion of the market)"
    else:
        outcome = f"{verdict.challenger.model_id} rejected: {', '.join(failed)}"
    if missing:
        outcome += f" ({len(missing)} candidate(s) never evaluated)"
    finish_cycle(runtime.db, cycle.cycle_id, decision_id=verdict.decision_id, outcome=outcome)
    return CycleJudgement(cycle, True, missing, verdict)
