"""Promotion: per market, judge the pending challenger and move the champion only on a pass."""

import base64
from typing import TYPE_CHECKING, Any

import dagster as dg

from goldrl_dagster.defs.keys import EVALUATION_REPORT, MODELS_GROUP, PROMOTED_MODEL
from goldrl_dagster.defs.market_data.partitions import market_instrument_partitions
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.learning.cycle import judge_cycle
from goldrl_dagster.lib.promotion.tables import rules_markdown
from goldrl_dagster.lib.rollout.config import RolloutConfig
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.cycle_store import load_cycle
from goldrl_dagster.lib.storage.registry import (
    latest_own_report,
    load_evaluation,
    pending_challengers,
)
from goldrl_dagster.lib.storage.rollout_store import RolloutError

if TYPE_CHECKING:
    # The gate pulls SciPy, arch and the evaluation stack: imported by the run that judges.
    from goldrl_dagster.lib.promotion.gate import GateConfig
    from goldrl_dagster.lib.promotion.judge import PromotionVerdict


class PromotionConfig(dg.Config):
    """Which challenger to judge, and the gate's thresholds (see ``GateConfig``).

    By default the partition's market judges its newest evaluated challenger that has no
    decision yet, so the outcome never depends on the order runs happened in.
    """

    interval: str = "1m"
    model_id: str | None = None
    cycle_id: str | None = None
    give_up: bool = False
    min_trades: int = 10
    min_trading_days: int = 5
    min_folds: int = 3
    confidence: float = 0.95
    bootstrap_reps: int = 2000
    min_probabilistic_sharpe: float = 0.95
    min_deflated_sharpe: float = 0.95
    min_fold_consistency: float = 0.5
    max_pbo: float = 0.5
    max_drawdown: float = 0.20
    max_drawdown_vs_champion: float = 1.5
    staged: bool = True
    canary_fraction: float = 0.25
    min_shadow_decisions: int = 120
    min_canary_decisions: int = 120
    min_canary_fills: int = 3

    def gate(self) -> "GateConfig":
        """The gate thresholds."""
        from goldrl_dagster.lib.promotion.gate import GateConfig

        fields = self.model_dump(
            exclude={"interval", "model_id", "cycle_id", "give_up", "staged", *_ROLLOUT_FIELDS}
        )
        try:
            return GateConfig(**fields)
        except ValueError as exc:
            raise dg.Failure(f"invalid promotion config: {exc}") from exc

    def rollout(self) -> RolloutConfig | None:
        """The rollout thresholds, or None to make a passing challenger champion at once."""
        if not self.staged:
            return None
        try:
            return RolloutConfig(**self.model_dump(include=set(_ROLLOUT_FIELDS)))
        except ValueError as exc:
            raise dg.Failure(f"invalid promotion config: {exc}") from exc


_ROLLOUT_FIELDS = (
    "canary_fraction", "min_shadow_decisions", "min_canary_decisions", "min_canary_fills",
)  # fmt: skip


@dg.asset(
    key=PROMOTED_MODEL,
    group_name=MODELS_GROUP,
    deps=[dg.AssetDep(EVALUATION_REPORT, partition_mapping=dg.AllPartitionMapping())],
    partitions_def=market_instrument_partitions,
    kinds={"postgres"},
)
def promoted_model(
    context: dg.AssetExecutionContext, config: PromotionConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """The market's champion pointer, moved only when a challenger passes the statistical gate.

    On a market that has a champion, a passing challenger starts a staged rollout (shadow ->
    canary -> full, reviewed by ``models/rollout``); a market's first champion (nothing to roll
    back to) or ``staged: false`` moves the pointer at once.

    The champion is re-evaluated on the challenger's dataset, folds, window and cost model;
    the decision, each rule's value, threshold and verdict, the champion's replay and the
    market's number of trials are stored, promoted or not; the live engines trading the market
    are notified of a new champion (PostgreSQL NOTIFY ``goldrl_champion``).
    """
    runtime = storage.runtime()
    instrument = context.partition_key
    if config.cycle_id:
        return _judge_cycle(context, config, runtime)
    if config.model_id:
        report_id = latest_own_report(runtime.db, config.model_id)
        if report_id is None:
            raise dg.Failure(f"model {config.model_id} has no evaluation on its own dataset")
    else:
        pending = pending_challengers(runtime.db, instrument, config.interval)
        if not pending:
            note = f"no evaluated challenger awaits a decision on {instrument} {config.interval}"
            context.log.info(note)
            return dg.MaterializeResult(metadata={"judged": "none", "note": note})
        report_id = pending[0]
    scored = load_evaluation(runtime.db, report_id)
    if (scored.instrument, scored.interval) != (instrument, config.interval):
        raise dg.Failure(
            f"report {report_id} scored {scored.instrument} {scored.interval}, not this "
            f"partition's market ({instrument} {config.interval}); nothing was decided"
        )
    from goldrl_dagster.lib.promotion.judge import judge_challenger

    try:
        verdict = judge_challenger(
            runtime, report_id, config.gate(), decided_by="dagster",
            on_progress=context.log.info, rollout=config.rollout(),
        )  # fmt: skip
    except RolloutError as exc:
        raise dg.Failure(f"the challenger passed but its rollout could not start: {exc}") from exc
    challenger = verdict.challenger.model_id
    staged = verdict.rollout_id is not None
    champion = challenger if verdict.promoted and not staged else verdict.champion_model
    failed = [rule.rule for rule in verdict.decision.failed()]
    context.log.info(
        "%s %s on %s %s (decision %s, %d trials)%s; champion is %s",
        challenger, "promoted" if verdict.promoted else "rejected", instrument, config.interval,
        verdict.decision_id, verdict.trials, f": failed {failed}" if failed else "",
        champion or "none",
    )  # fmt: skip
    return dg.MaterializeResult(metadata=_verdict_metadata(verdict, report_id))


def _verdict_metadata(verdict: "PromotionVerdict", report_id: str) -> dict[str, Any]:
    from goldrl_dagster.lib.evaluation.annualisation import describe_record
    from goldrl_dagster.lib.promotion.plots import decision_plot_png  # matplotlib

    challenger = verdict.challenger.model_id
    instrument, interval = verdict.challenger.instrument, verdict.challenger.interval
    staged = verdict.rollout_id is not None
    champion = challenger if verdict.promoted and not staged else verdict.champion_model
    failed = [rule.rule for rule in verdict.decision.failed()]
    png = decision_plot_png(verdict.decision, verdict.challenger, verdict.champion_report)
    reasons = verdict.decision.reasons()
    return {
            "decision_id": verdict.decision_id,
            "market": f"{instrument} {interval}",
            "challenger": challenger,
            "report_id": report_id,
            "promoted": verdict.promoted,
            "rollout_id": verdict.rollout_id if staged else "none (not staged)",
            "champion": champion or "none",
            "previous_champion": verdict.champion_model or "none",
            "champion_replay": (
                verdict.champion_report.report_id if verdict.champion_report else "none"
            ),
            "trials": verdict.trials,
            "annualisation": describe_record(
                verdict.challenger.config.get("annualisation"), interval
            ),
            "failed_rules": dg.MetadataValue.json(failed),
            "reasons": dg.MetadataValue.json(reasons),
            "rules": dg.MetadataValue.md(rules_markdown(reasons)),
            "gate_plot": dg.MetadataValue.md(
                f"![gate](data:image/png;base64,{base64.b64encode(png).decode()})"
            ),
        }


def _judge_cycle(
    context: dg.AssetExecutionContext, config: PromotionConfig, runtime: Runtime
) -> dg.MaterializeResult:
    """Judge a learning cycle's best candidate with the whole cycle as trials."""
    try:
        cycle = load_cycle(runtime.db, config.cycle_id or "")
    except LookupError as exc:
        raise dg.Failure(str(exc)) from exc
    if cycle.instrument != context.partition_key:
        raise dg.Failure(f"cycle {cycle.cycle_id} is not this partition's market")
    if cycle.judged_at is not None:
        note = f"cycle {cycle.cycle_id} was judged at {cycle.judged_at}: {cycle.outcome}"
        return dg.MaterializeResult(metadata={"judged": "already", "note": note})
    try:
        judgement = judge_cycle(
            runtime, cycle, config.gate(), rollout=config.rollout(), decided_by="learning loop",
            give_up=config.give_up,
        )  # fmt: skip
    except RolloutError as exc:
        raise dg.Failure(f"the challenger passed but its rollout could not start: {exc}") from exc
    if not judgement.ready:
        raise dg.Failure(
            f"cycle {cycle.cycle_id} still misses {len(judgement.missing)} candidate "
            f"evaluation(s): {judgement.missing}; rerun with give_up: true to judge without them"
        )
    finished = load_cycle(runtime.db, cycle.cycle_id)
    context.log.info("cycle %s: %s", cycle.cycle_id, finished.outcome)
    meta: dict[str, Any] = {"cycle_id": cycle.cycle_id, "outcome": finished.outcome or ""}
    meta["candidates"] = dg.MetadataValue.json(cycle.candidates)
    if judgement.verdict is not None:
        report_id = judgement.verdict.challenger.report_id
        meta |= _verdict_metadata(judgement.verdict, report_id)
    return dg.MaterializeResult(metadata=meta)
