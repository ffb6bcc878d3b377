"""Staged rollouts end to end on planted policies: start, live evidence, advance, roll back."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from planted_policy import planted_market, register_planted_dataset, register_planted_model
from rollout_support import write_live_decisions

from goldrl_dagster.lib.evaluation.model_evaluation import EvaluationSettings, evaluate_model
from goldrl_dagster.lib.promotion.gate import GateConfig
from goldrl_dagster.lib.promotion.judge import judge_challenger
from goldrl_dagster.lib.rollout.config import RolloutConfig
from goldrl_dagster.lib.rollout.manage import review_rollouts
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.drift_reports import (
    read_governance_requests,
    request_governance_action,
)
from goldrl_dagster.lib.storage.registry import current_champion
from goldrl_dagster.lib.storage.rollout_store import (
    RolloutError,
    load_rollout,
    market_assignment,
    rollout_transitions,
    traded_path,
    transition_rollout,
)

MARKET = ("XAUT-USDT", "15m")
SETTINGS = EvaluationSettings(n_folds=4)
ROLLOUT = RolloutConfig(min_shadow_decisions=60, min_canary_decisions=60, min_canary_fills=3)


@pytest.fixture(scope="module")
def market():
    return planted_market(days=24, seed=11)


def _report(runtime, table, digest, model_id, follow, workdir):
    register_planted_model(runtime, table, digest, model_id, follow, workdir)
    return evaluate_model(runtime, model_id, settings=SETTINGS).record.report_id


def _staged(runtime, table, tmp_path, challenger_follows="signal_strong"):
    digest = register_planted_dataset(runtime, table, MARKET[1])
    weak = _report(runtime, table, digest, "weak", "signal_weak", tmp_path)
    assert judge_challenger(runtime, weak, GateConfig(), rollout=ROLLOUT).promoted
    assert current_champion(runtime.db, *MARKET) == "weak"  # first champion: at once
    strong = _report(runtime, table, digest, "strong", challenger_follows, tmp_path)
    return judge_challenger(runtime, strong, GateConfig(), rollout=ROLLOUT, decided_by="test")


def test_a_better_challenger_goes_shadow_canary_full(market, clean_database, tmp_path):
    runtime = open_runtime()
    verdict = _staged(runtime, market, tmp_path)
    assert verdict.promoted and verdict.rollout_id is not None
    rollout = load_rollout(runtime.db, verdict.rollout_id)
    assert (rollout.stage, rollout.challenger, rollout.stable_champion) == (
        "shadow", "strong", "weak",
    )  # fmt: skip
    assert rollout.config["edge"] > 0  # the backtest's excess per unit per bar
    # The champion pointer does not move until the rollout is complete.
    assert current_champion(runtime.db, *MARKET) == "weak"
    shadow = market_assignment(runtime.db, *MARKET)
    assert (shadow.trading_model, shadow.size_fraction, shadow.shadow_models) == (
        "weak", 1.0, ("strong",),
    )  # fmt: skip

    # Too little evidence: wait.
    signals = {"weak": "signal_weak", "strong": "signal_strong"}
    write_live_decisions(
        runtime,
        market,
        traded="weak",
        shadow="strong",
        rollout_id=rollout.rollout_id,
        bars=20,
        signal=signals,
    )
    [early] = review_rollouts(runtime, decided_by="test")
    assert early.verdict.action == "wait" and early.moved_to is None
    assert "shadow_decisions" in early.verdict.reason()
    assert early.verdict.evidence["bars"] == 20
    # A session that does not follow the rollout (a pinned paper session of the champion on
    # other bars) is not evidence.
    write_live_decisions(
        runtime, market, traded="weak", shadow="strong", rollout_id=None, bars=96,
        signal=signals, skip=300,
    )  # fmt: skip
    [still] = review_rollouts(runtime, decided_by="test")
    assert still.verdict.action == "wait" and still.verdict.evidence["bars"] == 20

    # A day of shadow decisions confirms the edge: canary at a quarter of the size.
    write_live_decisions(
        runtime,
        market,
        traded="weak",
        shadow="strong",
        rollout_id=rollout.rollout_id,
        bars=96,
        signal=signals,
        skip=20,
    )
    [advanced] = review_rollouts(runtime, decided_by="test")
    assert advanced.moved_to == "canary", advanced.verdict.reason()
    canary = market_assignment(runtime.db, *MARKET)
    assert (canary.trading_model, canary.size_fraction, canary.shadow_models) == (
        "strong", 0.25, ("weak",),
    )  # fmt: skip

    # The canary trades (the challenger's own orders) with the champion in shadow.
    write_live_decisions(
        runtime,
        market,
        traded="strong",
        shadow="weak",
        rollout_id=rollout.rollout_id,
        bars=96,
        signal=signals,
        skip=116,
    )
    [done] = review_rollouts(runtime, decided_by="test")
    assert done.moved_to == "full", done.verdict.reason()
    assert current_champion(runtime.db, *MARKET) == "strong"
    assert market_assignment(runtime.db, *MARKET).shadow_models == ()
    stages = [
        (t["from_stage"], t["to_stage"])
        for t in rollout_transitions(runtime.db, rollout.rollout_id)
    ]
    assert stages == [(None, "shadow"), ("shadow", "canary"), ("canary", "full")]
    assert review_rollouts(runtime, decided_by="test") == []  # nothing in progress


def test_a_challenger_that_underdelivers_live_is_rolled_back(market, clean_database, tmp_path):
    runtime = open_runtime()
    verdict = _staged(runtime, market, tmp_path)
    rollout_id = verdict.rollout_id
    # Live, the "strong" challenger decides like noise: the SPRT rejects the promised edge.
    write_live_decisions(
        runtime,
        market,
        traded="weak",
        shadow="strong",
        rollout_id=rollout_id,
        bars=400,
        signal={"weak": "signal_weak", "strong": "signal_noise"},
    )
    [outcome] = review_rollouts(runtime, decided_by="test")
    assert outcome.moved_to == "rolled_back", outcome.verdict.reason()
    failed = [r.rule for r in outcome.verdict.rules if r.kind == "breach" and not r.passed]
    assert "sprt_no_edge_rejected" in failed
    assert current_champion(runtime.db, *MARKET) == "weak"
    assignment = market_assignment(runtime.db, *MARKET)
    assert (assignment.trading_model, assignment.shadow_models) == ("weak", ())
    last = rollout_transitions(runtime.db, rollout_id)[-1]
    assert last["to_stage"] == "rolled_back" and "sprt_no_edge_rejected" in last["reason"]
    assert last["evidence"]["sprt"]["decision"] == "accept_h0"


def test_stage_moves_are_checked_and_the_history_is_append_only(market, clean_database, tmp_path):
    runtime = open_runtime()
    verdict = _staged(runtime, market, tmp_path)
    rollout_id = verdict.rollout_id
    with pytest.raises(RolloutError, match="is in shadow; it cannot move to full"):
        transition_rollout(runtime.db, rollout_id, "full", reason="skip", decided_by="test")
    # A second challenger cannot start while one is in progress on the market.
    third = _report(runtime, market, verdict.challenger.dataset_hash, "third", "signal_strong",
                    tmp_path)  # fmt: skip
    with pytest.raises(RolloutError, match=f"rollout {rollout_id} of strong is in shadow"):
        judge_challenger(runtime, third, GateConfig(), rollout=ROLLOUT)
    transition_rollout(runtime.db, rollout_id, "aborted", reason="operator", decided_by="ops")
    with pytest.raises(RolloutError, match="is in aborted"):
        transition_rollout(runtime.db, rollout_id, "canary", reason="late", decided_by="test")
    with runtime.db.connect() as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("UPDATE rollout_transitions SET reason = 'edited'")
    with runtime.db.connect() as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("DELETE FROM rollout_transitions")


def test_stage_changes_are_notified(market, clean_database, tmp_path):
    runtime = open_runtime()
    with psycopg.connect(runtime.db.url, autocommit=True) as listener:
        listener.execute("LISTEN goldrl_rollout")
        verdict = _staged(runtime, market, tmp_path)
        notes = list(listener.notifies(timeout=1.0, stop_after=1))
    assert f'"rollout_id": {verdict.rollout_id}' in notes[0].payload
    assert '"stage": "shadow"' in notes[0].payload


def test_rollout_thresholds_are_validated():
    for field, value in [("canary_fraction", 0.0), ("sprt_alpha", 0.5), ("min_canary_fills", 0),
                         ("edge", float("nan")), ("max_turnover_ratio", 0.5)]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            RolloutConfig(**{field: value})
    with pytest.raises(ValueError, match="unknown rollout setting"):
        RolloutConfig.from_dict({"canary": 1})
    assert RolloutConfig.from_dict(ROLLOUT.to_dict()) == ROLLOUT


def test_a_drift_alert_asking_for_rollback_ends_the_rollout(market, clean_database, tmp_path):
    runtime = open_runtime()
    verdict = _staged(runtime, market, tmp_path)
    _, created = request_governance_action(
        runtime.db, kind="rollback", instrument=MARKET[0], interval=MARKET[1], model_id="weak",
        day=None, reason="PSI 0.41 on log_ret_60", requested_by="feature_drift",
    )  # fmt: skip
    assert created
    [outcome] = review_rollouts(runtime, decided_by="test")
    assert outcome.moved_to == "rolled_back"
    assert "feature_drift asked to rollback: PSI 0.41 on log_ret_60" in outcome.verdict.reason()
    assert current_champion(runtime.db, *MARKET) == "weak"
    [handled] = read_governance_requests(runtime.db, instrument=MARKET[0])
    assert handled.handled_at is not None
    assert handled.outcome == f"rolled back rollout {verdict.rollout_id} of strong"


def test_a_traded_path_counts_the_position_kept_not_the_wish(clean_database):
    runtime = open_runtime()
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    rows = [
        ("filled BUY 0.05", 1, 0.05),
        ("blocked: max_order_notional", -1, 0.05),
        ("held: canary size 0.001 below the minimum", -1, 0.05),
        ("filled SELL 0.1", -1, -0.05),
    ]
    with runtime.db.connect() as conn:
        conn.execute("INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
                     "VALUES ('s', 'paper', 'XAUT-USDT', 'ws://t')")  # fmt: skip
        for i, (outcome, target, position) in enumerate(rows):
            conn.execute(
                "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id, "
                "model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action, "
                "target_position, price, position_after, cash_after, equity_after, outcome) "
                "VALUES ('s', 'XAUT-USDT', %s, 'm', 's', 'd', 'f', 'o', 0, %s, 2000, %s, 0, 0, %s)",
                (t0 + timedelta(minutes=i), target, position, outcome),
            )
        conn.commit()
    path = traded_path(runtime.db, "XAUT-USDT", "m", t0 - timedelta(days=9999))
    assert path.targets == [1, 1, 1, -1]
