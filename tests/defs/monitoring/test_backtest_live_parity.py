"""monitoring/backtest_live_parity on a real paper session against the simulator (issue 12).

A small PPO policy trades a paper account on the simulator's live stream; the day's candles
are stored from the exchange as the candles asset does; the parity asset replays the session
through the Nautilus backtest and must agree on every bar. Then one stored candle is altered (its
volume: prices, fills and marks stay the same) and the report must flag exactly the decided
bars whose recomputed observation changed, and put the PnL difference on feature mismatch.
"""

import asyncio
import dataclasses
import hashlib
from datetime import timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
import torch
from dbt_support import (
    analytics,
    dbt_environment,
    drop_analytics_schema,
    failed_nodes,
    node_statuses,
    run_dbt,
    truncate_goldrl_tables,
)
from live_engine_support import register_candidate_model

from goldrl_dagster.defs.market_data.partitions import MARKET_INSTRUMENTS
from goldrl_dagster.defs.monitoring.parity import backtest_live_parity, backtest_live_parity_daily
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.parity.compare import CAUSES
from goldrl_dagster.lib.rl import train as train_module
from goldrl_dagster.lib.rl.observation import build_observation
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.market_store import read_candles, write_candles
from goldrl_dagster.lib.storage.registry import load_model_record
from live_engine.service import run_live_engine
from live_engine.settings import LiveSettings

SYMBOL = "XAUT-USDT"
SPEC = DEFAULT_FEATURE_SET
MODEL_ID = "ppo-paritytest"
TOLERANCE = 1e-6


def _volume_follower(fit_policy):
    """``fit_policy``, then weights set by hand: long when ``volume_z_60`` > ~0.3, short below
    ~-0.3, flat between (the held position is ignored). Its decisions move bar by bar with a
    feature a stored candle's volume changes, so the test knows what a plant must do."""

    def fit(features, closes, cost_model, config, *args, **kwargs):
        small = dataclasses.replace(
            config, total_timesteps=64, n_envs=1, n_steps=64, batch_size=64, n_epochs=1,
            net_arch=(2,), episode_length=32,
        )  # fmt: skip
        trained = fit_policy(features, closes, cost_model, small, *args, **kwargs)
        column = SPEC.feature_names.index("volume_z_60")
        policy = trained.model.policy
        with torch.no_grad():
            hidden = policy.mlp_extractor.policy_net[0]
            hidden.weight.zero_()
            hidden.bias.zero_()
            hidden.weight[0, column] = 3.0
            hidden.weight[1, column] = -3.0
            head = policy.action_net
            head.weight.zero_()
            head.weight[2, 0] = 5.0
            head.weight[0, 1] = 5.0
            head.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))
        normalizer = trained.normalizer
        normalizer.obs_rms.mean = np.zeros_like(normalizer.obs_rms.mean)
        normalizer.obs_rms.var = np.ones_like(normalizer.obs_rms.var)
        return trained

    return fit


@pytest.fixture(scope="module")
def paper_day(settings, database, simulator, tmp_path_factory):
    """A paper session of a hand-set model on the simulator, and the day's candles stored."""
    truncate_goldrl_tables(database)  # the day's report covers every session of the day
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "fit_policy", _volume_follower(train_module.fit_policy))
        register_candidate_model(simulator.base_url, MODEL_ID, tmp_path_factory.mktemp("model"))
    summary = asyncio.run(
        run_live_engine(
            LiveSettings(
                instrument=SYMBOL, interval="1m", rest_url=simulator.base_url,
                ws_url=simulator.ws_url, model_id=MODEL_ID, duration_seconds=9.0,
                order_quantity=0.05, paper_account="paper:parity-tests", heartbeat_seconds=1.0,
            ),
            install_signals=False,
        )
    )  # fmt: skip
    decisions = read_frame(
        database,
        "SELECT * FROM live_decisions WHERE session_id = $1 ORDER BY bar_open_time",
        [summary.session_id],
    )
    assert decisions.height >= 4, "the session must decide a few bars to compare"
    day = decisions["bar_open_time"][0].date()
    decisions = decisions.filter(pl.col("bar_open_time").dt.date() == day)
    first, last = decisions["bar_open_time"][0], decisions["bar_open_time"][-1]
    anchor = feature_anchor(first, "1m", SPEC)
    with BingXRestClient(simulator.base_url) as client:
        klines = client.klines_range(
            SYMBOL, "1m", int(anchor.timestamp() * 1000), int(last.timestamp() * 1000) + 60_000
        )
    write_candles(database, klines_to_frame(klines, SYMBOL, "1m", "simulator"))
    return {"session_id": summary.session_id, "day": day, "decisions": decisions}


def _materialize(day):
    result = dg.materialize(
        [backtest_live_parity],
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=dg.MultiPartitionKey({"instrument": SYMBOL, "day": day.isoformat()}),
        resources={"storage": GoldrlStorage()},
    )
    [event] = result.get_asset_materialization_events()
    [check] = result.get_asset_check_evaluations()
    return {k: v.value for k, v in event.materialization.metadata.items()}, check


def _report(db, session_id):
    [report] = read_frame(
        db, "SELECT * FROM parity_reports WHERE session_id = $1", [session_id]
    ).iter_rows(named=True)
    bars = read_frame(
        db,
        "SELECT * FROM parity_report_bars WHERE report_id = $1 ORDER BY bar_open_time",
        [report["report_id"]],
    )
    return report, bars


def _attribution(report):
    import json

    values = report["attribution"]
    return json.loads(values) if isinstance(values, str) else values


@pytest.mark.slow  # the paper session and its Nautilus replay: about 45 s for the module
def test_a_paper_session_agrees_with_its_backtest_on_every_bar(paper_day, database):
    meta, check = _materialize(paper_day["day"])
    decided = paper_day["decisions"].height
    assert meta["reports"] == 1 and meta["live_decisions"] == decided
    assert meta["compared_bars"] == meta["identical_bars"] == decided
    assert meta["agreement_pct"] == meta["identical_agreement_pct"] == 100.0
    assert meta["feature_mismatch_bars"] == 0
    assert check.passed
    assert "equity_curves" in meta and "data:image/png;base64," in meta["equity_curves"]
    assert paper_day["session_id"][:20] in meta["attribution_table"]

    report, bars = _report(database, paper_day["session_id"])
    assert report["mode"] == "paper" and report["model_id"] == MODEL_ID
    decided_bars = bars.filter(pl.col("live_status") == "decided")
    assert decided_bars.height == decided
    assert decided_bars["agree"].all() and decided_bars["feature_match"].all()
    # The backtest recomputed, from the stored candles, exactly the observations live hashed.
    assert (decided_bars["live_observation_sha256"]
            == decided_bars["backtest_observation_sha256"]).all()  # fmt: skip
    # The paper broker and Nautilus fill the same orders at the same prices under one cost model.
    traded = bars.filter(pl.col("live_fill_quantity") != 0)
    assert traded.height == report["live_fills"] == report["backtest_fills"]
    assert (traded["live_fill_quantity"] == traded["backtest_fill_quantity"]).all()
    if traded.height:
        assert report["max_abs_fill_gap_bps"] < 1e-6
    attribution = _attribution(report)
    assert set(attribution) == set(CAUSES)
    for cause in CAUSES:
        if cause != "funding":  # paper marks funding at the stored mark price, Nautilus at close
            assert abs(attribution[cause]) < TOLERANCE, (cause, attribution)
    assert report["pnl_gap"] == pytest.approx(attribution["funding"], abs=TOLERANCE)
    assert report["missed_bars"] == bars.filter(pl.col("live_status") != "decided").height
    # The live PnL rebuilt from stored closes, fills and funding is the ledger's equity change.
    assert abs(report["ledger_residual"]) < 1e-4


def _live_observation_digests(db, policy, decisions, candles):
    """sha256 of each decided bar's observation on these candles, and the policy's target."""
    features = compute_features_anchored(candles, SPEC)
    matrix = feature_matrix(features, SPEC)
    row_of = {t: i for i, t in enumerate(features["open_time"].to_list())}
    digests, targets = {}, {}
    position = 0
    for row in decisions.iter_rows(named=True):
        vector = matrix[row_of[row["bar_open_time"]]]
        observation = build_observation(vector, position)
        digests[row["bar_open_time"]] = hashlib.sha256(observation.tobytes()).hexdigest()
        targets[row["bar_open_time"]] = (-1, 0, 1)[policy.act(observation)]
        position = int(np.sign(row["position_after"]))
    return digests, targets


@pytest.mark.slow  # the paper session and its Nautilus replay: about 45 s for the module
def test_a_planted_candle_is_flagged_on_exactly_the_bars_it_changes(paper_day, database):
    runtime = open_runtime()
    model = load_model_record(database, MODEL_ID)
    policy = load_policy(runtime.artifacts.path_for(model.artifact))
    decisions = paper_day["decisions"]
    first, last = decisions["bar_open_time"][0], decisions["bar_open_time"][-1]
    anchor = feature_anchor(first, "1m", SPEC)
    stored = read_candles(database, SYMBOL, "1m", anchor, last + timedelta(minutes=1))
    live_digests, live_targets = _live_observation_digests(database, policy, decisions, stored)
    assert live_digests == dict(
        zip(decisions["bar_open_time"], decisions["observation_sha256"], strict=True)
    )
    # Plant: multiply the volume of a decided bar the policy did not go long on (prices, fills
    # and marks stay as they were; the volume z-score the policy follows jumps).
    planted = None
    for when in [t for t, target in live_targets.items() if target != 1]:
        for factor in (20.0, 200.0):
            altered = stored.with_columns(
                pl.when(pl.col("open_time") == when).then(pl.col("volume") * factor)
                .otherwise(pl.col("volume")).alias("volume")
            )  # fmt: skip
            digests, targets = _live_observation_digests(database, policy, decisions, altered)
            changed = {t for t in targets if targets[t] != live_targets[t]}
            if when in changed:
                planted = (when, altered, digests, changed)
                break
        if planted:
            break
    assert planted is not None, f"no plant changed a decision: {sorted(live_targets.values())}"
    when, altered, digests, changed = planted
    expected_mismatch = {t for t in digests if digests[t] != live_digests[t]}
    write_candles(database, altered.filter(pl.col("open_time") == when))

    meta, check = _materialize(paper_day["day"])
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert meta["feature_mismatch_bars"] == len(expected_mismatch) > 0
    report, bars = _report(database, paper_day["session_id"])
    assert report["status"] == "mismatch"
    flagged = set(bars.filter(pl.col("feature_match").not_())["bar_open_time"].to_list())
    assert flagged == expected_mismatch
    # Disagreement only where the altered features changed the policy's answer...
    disagree = set(bars.filter(pl.col("agree").not_())["bar_open_time"].to_list())
    assert disagree == changed and disagree <= flagged
    # ...while the bars it left identical (if any) still agree.
    assert meta["identical_bars"] == decisions.height - len(expected_mismatch)
    assert meta["identical_agreement_pct"] in ((None,) if not meta["identical_bars"] else (100.0,))
    # The PnL gap is put on the feature mismatch; nothing on execution or missed bars.
    attribution = _attribution(report)
    assert abs(attribution["feature_mismatch"]) > TOLERANCE
    for cause in ("slippage", "latency", "missed_bars", "held_or_blocked", "unexplained"):
        assert abs(attribution[cause]) < TOLERANCE, (cause, attribution)
    assert report["pnl_gap"] == pytest.approx(
        attribution["feature_mismatch"] + attribution["funding"], abs=TOLERANCE
    )
    causes = set(bars["cause"].drop_nulls().to_list())
    assert causes == {"feature_mismatch"}
    first_divergence = bars.filter(pl.col("cause").is_not_null())["bar_open_time"][0]
    assert first_divergence == min(changed) == when


@pytest.mark.slow  # the paper session and its Nautilus replay: about 45 s for the module
def test_the_parity_mart_has_one_row_per_report_with_the_gap_by_cause(
    paper_day, database, tmp_path
):
    # Runs after the planted candle: the stored report is the mismatching one.
    [report] = read_frame(database, "SELECT * FROM parity_reports").iter_rows(named=True)
    with dbt_environment(database):
        try:
            result = run_dbt(tmp_path, "build", "--select", "+backtest_live_parity")
            assert not failed_nodes(result), node_statuses(result)
            assert {"stg_parity__reports", "stg_parity__report_bars", "backtest_live_parity"} <= (
                set(node_statuses(result))
            )
            mart = analytics(database, "backtest_live_parity", "report_id")
        finally:
            drop_analytics_schema(database)
    [row] = mart.iter_rows(named=True)
    assert (row["session_id"], row["model_id"], row["parity_date"]) == (
        paper_day["session_id"], MODEL_ID, paper_day["day"],
    )  # fmt: skip
    assert row["status"] == "mismatch" == report["status"]
    attribution = _attribution(report)
    gaps = {cause: row[f"gap_{cause}"] for cause in CAUSES}
    assert gaps == pytest.approx(attribution, abs=1e-12)
    assert sum(gaps.values()) == pytest.approx(row["pnl_gap"], abs=TOLERANCE)
    assert row["bars_feature_mismatch"] >= 1 and row["bars_missed"] == 0
    assert row["disagreeing_bars"] == row["compared_bars"] - row["agreeing_bars"] >= 1


def test_the_daily_schedule_asks_for_yesterday_of_every_market():
    from datetime import UTC, datetime

    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2025, 3, 11, 0, 50, tzinfo=UTC)
    )
    requests = list(backtest_live_parity_daily(context))
    assert [r.partition_key for r in requests] == [
        dg.MultiPartitionKey({"instrument": i, "day": "2025-03-10"}) for i in MARKET_INSTRUMENTS
    ]
    assert len({r.run_key for r in requests}) == len(MARKET_INSTRUMENTS)
