"""The live engine against the simulator's real WebSocket stream and a real PostgreSQL."""

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl
import pytest
from live_engine_support import promote_champion, register_candidate_model

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.models import klines_to_frame
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.trading import BingXTradingClient
from goldrl_dagster.lib.features.anchoring import compute_features_anchored, feature_anchor
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET, TA_V2
from goldrl_dagster.lib.risk import DEFAULT_LIMITS as RISK_DEFAULTS
from goldrl_dagster.lib.rl.observation import build_observation
from goldrl_dagster.lib.rl.policy import LoadedPolicy, load_policy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.audit_log import recent_audit, verify_audit_chain
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.ledger_store import ledger_cash, ledger_position
from goldrl_dagster.lib.storage.registry import (
    load_model_record,
)
from goldrl_dagster.lib.storage.risk_store import save_risk_config
from live_engine.service import (
    LiveEngineError,
    LiveSummary,
    exchange_clock,
    feature_set_for,
    open_session,
    run_live_engine,
)
from live_engine.settings import LiveSettings
from live_engine.store import SessionWriter, stop_session

SYMBOL = "XAUT-USDT"


@pytest.fixture(scope="module")
def candidate_model(settings, database, simulator, tmp_path_factory):
    """A small PPO policy trained on simulator candles and registered like the asset does."""
    return register_candidate_model(
        simulator.base_url, "ppo-livetest", tmp_path_factory.mktemp("model")
    )


def _settings(simulator, model_id, duration, account="paper:live-tests"):
    return LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=simulator.base_url,
        ws_url=simulator.ws_url,
        model_id=model_id,
        duration_seconds=duration,
        order_quantity=0.05,
        paper_account=account,
        heartbeat_seconds=1.0,
    )


@contextlib.contextmanager
def _open_loop(simulator, model_id, rest, spec=DEFAULT_FEATURE_SET, clock=None):
    """A decision loop on a started paper session of its own account (as the service opens);
    the session is stopped and its lease released afterwards."""
    runtime = open_runtime()
    model = load_model_record(runtime.db, model_id)
    session = f"loop-{time.time_ns()}"
    loop = open_session(
        runtime,
        _settings(simulator, model_id, 1.0, account=f"paper:{session}"),
        model,
        load_policy(runtime.artifacts.path_for(model.artifact)),
        spec,
        LiveSummary(session, model_id, SYMBOL),
        rest,
        clock=clock or exchange_clock(rest),
        writer=SessionWriter(runtime.db),
    )
    try:
        yield loop
    finally:
        loop.writer.run(lambda conn: loop.trading.use(conn).stop())
        loop.writer.close()
        stop_session(runtime.db, session, "test over")


def test_live_engine_decides_on_streamed_bars_with_provenance(candidate_model, simulator):
    summary = asyncio.run(
        run_live_engine(
            _settings(simulator, candidate_model["model_id"], 6.0), install_signals=False
        )
    )
    assert summary.decisions >= 2
    assert summary.stop_reason == "duration elapsed"
    db = open_runtime().db
    rows = read_frame(
        db,
        "SELECT * FROM live_decisions WHERE session_id = $1 ORDER BY bar_open_time",
        [summary.session_id],
    )
    assert rows.height == summary.decisions
    assert set(rows["model_sha256"]) == {candidate_model["sha256"]}
    # The start is in the audit log, chained, with the model and no credential.
    [started] = [
        e
        for e in recent_audit(db, limit=50, action="live.started")
        if e.after["session_id"] == summary.session_id
    ]
    assert started.after["model_sha256"] == candidate_model["sha256"]
    assert started.actor == "goldrl live (paper)"
    assert verify_audit_chain(db).ok
    assert set(rows["dataset_hash"]) == {candidate_model["dataset_hash"]}
    assert set(rows["feature_fingerprint"]) == {DEFAULT_FEATURE_SET.fingerprint}
    steps = rows["bar_open_time"].diff().drop_nulls().dt.total_seconds().to_list()
    assert steps and all(s == 60 for s in steps), "one decision per consecutive closed bar"
    # Each observation is exactly what the anchored batch feature code gives on the exchange's
    # candles from the bar's anchor up to that bar, with the position held before the decision.
    position = 0
    with BingXRestClient(simulator.base_url) as client:
        for row in rows.iter_rows(named=True):
            bar_ms = int(row["bar_open_time"].timestamp() * 1000)
            anchor = feature_anchor(row["bar_open_time"], "1m", DEFAULT_FEATURE_SET)
            anchor_ms = int(anchor.timestamp() * 1000)
            history = client.klines_range(SYMBOL, "1m", anchor_ms, bar_ms + 60_000)
            frame = klines_to_frame(history, SYMBOL, "1m", "bingx_rest")
            features = compute_features_anchored(frame, DEFAULT_FEATURE_SET)
            obs = build_observation(feature_matrix(features.tail(1))[0], position)
            assert hashlib.sha256(obs.tobytes()).hexdigest() == row["observation_sha256"]
            position = int(np.sign(row["position_after"]))
    # Every position change is one filled order of that decision, booked in the ledger.
    orders = read_frame(
        db,
        "SELECT o.decision_id, o.state, o.side, o.executed_qty FROM orders o "
        "JOIN live_decisions d USING (decision_id) WHERE d.session_id = $1",
        [summary.session_id],
    )
    previous = rows["position_after"].shift(1).fill_null(0.0)
    changes = int((rows["position_after"] != previous).sum())
    assert orders.height == summary.orders == summary.fills == changes
    assert set(orders["state"]) <= {"filled"}
    assert set(rows["outcome"].drop_nulls()) and rows["outcome"].null_count() == 0
    with db.connect() as conn:
        held = ledger_position(conn, "paper:live-tests", SYMBOL)
        cash = ledger_cash(conn, "paper:live-tests")
    assert float(held.quantity) == rows["position_after"][-1] == summary.position
    assert float(cash) == pytest.approx(rows["cash_after"][-1])
    assert summary.failed_reconciliations == 0 and summary.reconciliations >= 1
    session = read_frame(
        db,
        "SELECT stopped_at, stop_reason FROM live_sessions WHERE session_id = $1",
        [summary.session_id],
    )
    assert session["stopped_at"][0] is not None


@pytest.mark.parametrize("spec", [DEFAULT_FEATURE_SET, TA_V2], ids=lambda s: s.name)
def test_live_feature_rows_equal_the_anchored_batch_rows_byte_for_byte(
    candidate_model, simulator, spec
):
    # The decision loop's own path: seed from the anchor over REST, then closed bars one by
    # one across UTC midnight, with a hole the loop must refill over REST before computing.
    model = load_model_record(open_runtime().db, candidate_model["model_id"])
    first_bar = datetime(2025, 3, 8, 23, 0, tzinfo=UTC)
    first_ms = int(first_bar.timestamp() * 1000)
    end_ms = first_ms + 90 * 60_000  # through 00:29 on the 9th
    with (
        BingXRestClient(simulator.base_url) as rest,
        _open_loop(simulator, model.model_id, rest, spec) as loop,
    ):
        start_ms = loop.history_start_ms(first_ms)
        assert start_ms == int(feature_anchor(first_bar, "1m", spec).timestamp() * 1000)
        loop.seed_history(rest.klines_range(SYMBOL, "1m", start_ms, first_ms))
        streamed = rest.klines_range(SYMBOL, "1m", first_ms, end_ms)
        rows = {}
        for i, kline in enumerate(streamed):
            if i in (40, 41, 42):
                continue  # lost pushes: the next bar's gap fill fetches them
            row = loop.feature_row(kline)
            assert row is not None
            rows[kline.open_time_ms] = row
        assert loop.feature_row(streamed[-1]) is None  # a replayed push is ignored
        history = rest.klines_range(SYMBOL, "1m", start_ms, end_ms)
    batch = compute_features_anchored(klines_to_frame(history, SYMBOL, "1m", "bingx_rest"), spec)
    batch = batch.filter(pl.col("open_time") >= first_bar)
    assert batch.height == 90 and len(rows) == 87
    matrix = feature_matrix(batch, spec)
    times = batch["open_time"].dt.epoch("ms").to_list()
    for t, expected, warmup in zip(times, matrix, batch["is_warmup"], strict=True):
        if t in rows:
            assert rows[t].values.tobytes() == expected.tobytes(), t
            assert rows[t].is_warmup == warmup
    assert not any(r.is_warmup for r in rows.values())


def test_live_engine_refuses_without_a_champion(candidate_model, simulator):
    with open_runtime().db.connect() as conn:
        conn.execute("DELETE FROM champions")
        conn.commit()
    with pytest.raises(LiveEngineError, match="no champion"):
        asyncio.run(run_live_engine(_settings(simulator, None, 1.0), install_signals=False))


def test_live_cli_stops_cleanly_on_sigterm(candidate_model, simulator, settings):
    env = {
        **os.environ,
        "GOLDRL_BINGX_BASE_URL": simulator.base_url,
        "GOLDRL_BINGX_WS_URL": simulator.ws_url,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "live_engine", "--model-id", candidate_model["model_id"]],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    db = open_runtime().db
    deadline = time.monotonic() + 120
    decided = 0
    while time.monotonic() < deadline and decided == 0 and proc.poll() is None:
        time.sleep(0.5)
        decided = read_frame(
            db,
            "SELECT count(*) FROM live_decisions d JOIN live_sessions s USING (session_id) "
            "WHERE s.stopped_at IS NULL",
        )[0, 0]
    assert decided > 0, proc.poll() is not None and proc.communicate()[0][-3000:]
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert "stop requested" in output
    open_sessions = read_frame(db, "SELECT count(*) FROM live_sessions WHERE stopped_at IS NULL")[
        0, 0
    ]
    assert open_sessions == 0


def test_only_feature_sets_this_build_computes_are_traded():
    assert feature_set_for(TA_V2.fingerprint) is TA_V2
    assert feature_set_for(DEFAULT_FEATURE_SET.fingerprint) is DEFAULT_FEATURE_SET
    with pytest.raises(LiveEngineError, match="feature set 000000000000, which this build"):
        feature_set_for("0" * 64)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, 0.0])
def test_absurd_order_quantities_are_refused_before_anything_starts(bad):
    from live_engine.settings import LiveSettings

    with pytest.raises(ValueError, match="order_quantity must be a positive finite number"):
        LiveSettings("XAUT-USDT", "1m", "http://x", "ws://x", order_quantity=bad)
    with pytest.raises(ValueError, match="starting_cash must be a positive finite number"):
        LiveSettings("XAUT-USDT", "1m", "http://x", "ws://x", starting_cash=bad)


def test_after_a_silence_only_the_newest_fresh_bar_is_decided_on(candidate_model, simulator):
    from live_engine.service import _decide

    runtime = open_runtime()
    first_ms = int(datetime(2025, 3, 8, 22, 0, tzinfo=UTC).timestamp() * 1000)
    exchange_now = [first_ms + 3_600_000]  # an hour after the first refilled bar opened
    with (
        BingXRestClient(simulator.base_url) as rest,
        _open_loop(
            simulator, candidate_model["model_id"], rest, clock=lambda: exchange_now[0]
        ) as loop,
    ):
        summary = loop.summary
        loop.seed_history(
            rest.klines_range(SYMBOL, "1m", loop.history_start_ms(first_ms), first_ms)
        )
        refill = rest.klines_range(SYMBOL, "1m", first_ms, first_ms + 30 * 60_000)
        fresh = rest.klines_range(SYMBOL, "1m", first_ms + 30 * 60_000, first_ms + 31 * 60_000)

        async def burst() -> None:
            queue: asyncio.Queue = asyncio.Queue()
            for kline in refill:  # a REST refill after a feed silence arrives all at once
                queue.put_nowait(kline)
            task = asyncio.create_task(_decide(loop, queue, asyncio.to_thread))
            await asyncio.wait_for(queue.join(), 60)
            exchange_now[0] = fresh[0].open_time_ms + 60_000 + 2_000  # 2 s after it closed
            queue.put_nowait(fresh[0])
            await asyncio.wait_for(queue.join(), 60)
            task.cancel()

        asyncio.run(burst())
    assert summary.decisions == 1 and summary.skipped_stale == 30
    skipped = read_frame(
        runtime.db,
        "SELECT reason FROM live_skipped_bars WHERE session_id = $1 ORDER BY bar_open_time",
        [summary.session_id],
    )["reason"].to_list()
    assert skipped[:-1] == ["superseded by a newer closed bar"] * 29
    assert skipped[-1].startswith("stale: closed") and "limit 90s" in skipped[-1]
    [decided] = read_frame(
        runtime.db,
        "SELECT bar_open_time FROM live_decisions WHERE session_id = $1",
        [summary.session_id],
    )["bar_open_time"].to_list()
    assert int(decided.timestamp() * 1000) == fresh[0].open_time_ms


def test_a_silent_open_session_is_marked_crashed_by_the_next_start(candidate_model, simulator):
    from live_engine.store import beat, mark_crashed_sessions, start_session, stop_session

    db = open_runtime().db
    dead, alive = f"dead-{time.time_ns()}", f"alive-{time.time_ns()}"
    for session_id in (dead, alive):
        start_session(db, session_id, "paper", SYMBOL, "ws://x")
    with db.connect() as conn:
        conn.execute(
            "UPDATE live_sessions SET started_at = now() - interval '10 minutes', "
            "heartbeat_at = now() - interval '5 minutes' WHERE session_id = %s",
            (dead,),
        )
        conn.commit()
    beat(db, alive)
    assert mark_crashed_sessions(db, SYMBOL, silent_for_s=60) == [dead]
    summary = asyncio.run(
        run_live_engine(
            _settings(simulator, candidate_model["model_id"], 2.0), install_signals=False
        )
    )
    sessions = read_frame(
        db,
        "SELECT session_id, stop_reason FROM live_sessions WHERE session_id = ANY($1)",
        [[dead, alive, summary.session_id]],
    )
    reasons = dict(zip(sessions["session_id"], sessions["stop_reason"], strict=True))
    assert reasons[dead].startswith("crashed")
    assert reasons[alive] is None  # beating recently: not ours to close
    assert reasons[summary.session_id] == "duration elapsed"
    stop_session(db, alive, "test over")


def test_refused_refills_degrade_the_feed_without_ending_the_session(candidate_model, simulator):
    async def scenario():
        session = asyncio.create_task(
            run_live_engine(
                _settings(simulator, candidate_model["model_id"], 16.0), install_signals=False
            )
        )
        await asyncio.sleep(4.0)
        # Twice what one REST refill retries through: the feed degrades, backs off, recovers.
        simulator.inject_rest_faults(*([503] * 6))
        return await session

    summary = asyncio.run(scenario())
    assert summary.stop_reason == "duration elapsed"
    assert summary.feed_failures >= 1 and not summary.degraded  # it degraded, then recovered
    decided = read_frame(
        open_runtime().db,
        "SELECT bar_open_time FROM live_decisions WHERE session_id = $1 ORDER BY bar_open_time",
        [summary.session_id],
    )["bar_open_time"].to_list()
    assert len(decided) >= 2


def test_live_mode_trades_the_champion_on_the_exchange_and_the_ledger_matches(
    candidate_model, simulator
):
    key, secret = f"live-{secrets.token_hex(4)}", secrets.token_hex(16)
    simulator.create_account(key, secret, balance="5000", hedge_mode=False)
    promote_champion(candidate_model["model_id"])
    with open_runtime().db.connect() as conn:
        save_risk_config(conn, RISK_DEFAULTS, created_by="test", reason="live-mode test")
    settings = dataclasses.replace(_settings(simulator, None, 8.0), mode="live")
    credentials = Credentials(key, secret)
    # The simulator's accounts start at BingX's default leverage, above the limits' 2x.
    with pytest.raises(LiveEngineError, match="leverage, above the risk limit max_leverage=2"):
        asyncio.run(run_live_engine(settings, install_signals=False, credentials=credentials))
    with BingXTradingClient(simulator.base_url, credentials) as client:
        client.set_leverage(SYMBOL, 2)
    summary = asyncio.run(run_live_engine(settings, install_signals=False, credentials=credentials))
    assert summary.mode == "live" and summary.account_id.startswith("simulator:")
    assert summary.decisions >= 2 and summary.failed_reconciliations == 0
    db = open_runtime().db
    with db.connect() as conn:
        held = ledger_position(conn, summary.account_id, SYMBOL).quantity
        cash = ledger_cash(conn, summary.account_id)
        orders = conn.execute(
            "SELECT client_order_id, state, executed_qty FROM orders WHERE session_id = %s",
            (summary.session_id,),
        ).fetchall()
    with BingXTradingClient(simulator.base_url, Credentials(key, secret)) as client:
        venue_position = sum((p.quantity for p in client.positions(SYMBOL)), Decimal(0))
        # Exactly one exchange order per recorded order, found by its client id.
        for client_order_id, state, executed in orders:
            found = client.query_order(SYMBOL, client_order_id=client_order_id)
            assert found.executed_qty == executed and state == "filled"
        wallet = next(b.balance for b in client.balance() if b.asset == "USDT")
    assert held == venue_position and float(held) == summary.position
    # The ledger's cash follows the wallet: opening sync, then fills' PnL and fees.
    assert abs(cash - wallet) < Decimal("0.01"), (cash, wallet)
    assert len(orders) == summary.orders
    assert summary.orders + summary.blocked + summary.held > 0
    assert summary.blocked == 0, "within the limits, nothing is blocked"


def test_live_mode_refuses_without_keys_a_risk_configuration_or_a_matching_champion(
    candidate_model, simulator, monkeypatch
):
    settings = dataclasses.replace(_settings(simulator, None, 2.0), mode="live")
    promote_champion(candidate_model["model_id"])
    monkeypatch.delenv("GOLDRL_BINGX_API_KEY", raising=False)
    monkeypatch.delenv("GOLDRL_BINGX_API_SECRET", raising=False)
    with pytest.raises(LiveEngineError, match="GOLDRL_BINGX_API_KEY"):
        asyncio.run(run_live_engine(settings, install_signals=False))
    # The XAUT champion is XAUT's only: PAXG has its own slot, and it is empty.
    paxg = dataclasses.replace(settings, instrument="PAXG-USDT")
    with pytest.raises(LiveEngineError, match="no champion model for PAXG-USDT 1m"):
        asyncio.run(run_live_engine(paxg, install_signals=False))
    # A model trained on XAUT is never traded on PAXG, even named explicitly on paper.
    paper_paxg = dataclasses.replace(
        paxg, mode="paper", model_id=candidate_model["model_id"]
    )
    with pytest.raises(LiveEngineError, match="trained on XAUT-USDT 1m bars; refusing"):
        asyncio.run(run_live_engine(paper_paxg, install_signals=False))
    with pytest.raises(ValueError, match="live mode trades the champion only"):
        dataclasses.replace(settings, model_id=candidate_model["model_id"])


# -- the fault trials that once ended sessions or lost money --------------------------------


def test_rate_limit_bursts_and_malformed_pushes_never_end_the_session(candidate_model, simulator):
    async def scenario():
        session = asyncio.create_task(
            run_live_engine(
                _settings(simulator, candidate_model["model_id"], 20.0, "paper:bursts"),
                install_signals=False,
            )
        )
        await asyncio.sleep(3.0)
        faulted = datetime.now(UTC)
        simulator.inject_rate_limit_burst(6)  # twice what one REST refill retries through
        simulator.malform_next_pushes(1)
        simulator.corrupt_next_frame()
        simulator.drop_connections()  # the next bar needs a refill: it meets the burst
        return await session, faulted

    try:
        summary, faulted = asyncio.run(scenario())
    finally:
        simulator.clear_rest_faults()
    assert summary.stop_reason == "duration elapsed" and summary.errors == 0
    decided = read_frame(
        open_runtime().db,
        "SELECT decided_at FROM live_decisions WHERE session_id = $1", [summary.session_id],
    )["decided_at"].to_list()  # fmt: skip
    assert any(at > faulted + timedelta(seconds=2) for at in decided), "decisions resumed"


def test_a_database_that_drops_every_connection_degrades_but_never_ends_the_session(
    candidate_model, simulator
):
    db = open_runtime().db

    async def scenario():
        session = asyncio.create_task(
            run_live_engine(
                _settings(simulator, candidate_model["model_id"], 12.0, "paper:db-drops"),
                install_signals=False,
            )
        )
        for _ in range(3):  # the server ends every other backend of the database, three times
            await asyncio.sleep(3.0)
            with db.connect(autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        return await session

    summary = asyncio.run(scenario())
    assert summary.stop_reason == "duration elapsed"
    assert summary.decisions >= 6
    stopped = read_frame(
        db, "SELECT stopped_at FROM live_sessions WHERE session_id = $1", [summary.session_id]
    )["stopped_at"][0]
    assert stopped is not None  # the session row is closed, not left open


def test_the_paper_account_survives_a_restart_and_the_next_session_trades_on_its_position(
    candidate_model, simulator
):
    account = f"paper:restart-{time.time_ns()}"
    first = asyncio.run(
        run_live_engine(
            _settings(simulator, candidate_model["model_id"], 5.0, account), install_signals=False
        )
    )
    second = asyncio.run(
        run_live_engine(
            _settings(simulator, candidate_model["model_id"], 5.0, account), install_signals=False
        )
    )
    db = open_runtime().db
    with db.connect() as conn:
        deposits = conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE account_id = %s AND kind = 'deposit'",
            (account,),
        ).fetchone()[0]
        held = ledger_position(conn, account, SYMBOL).quantity
        orders = conn.execute(
            "SELECT o.session_id, o.side, o.executed_qty FROM orders o "
            "WHERE o.account_id = %s ORDER BY o.created_at",
            (account,),
        ).fetchall()
    assert deposits == 1, "the opening deposit is booked once, not at every start"
    # The ledger's position is the sum of both sessions' fills: nothing was forgotten.
    signed = sum((q if side == "BUY" else -q for _, side, q in orders), Decimal(0))
    assert held == signed and float(held) == second.position
    assert abs(held) <= Decimal("0.05"), "the second session never added to a forgotten position"
    # The second session's first decision saw the first session's position.
    first_row = read_frame(
        db,
        "SELECT observation_sha256, bar_open_time FROM live_decisions WHERE session_id = $1 "
        "ORDER BY bar_open_time LIMIT 1",
        [second.session_id],
    ).row(0, named=True)
    bar_ms = int(first_row["bar_open_time"].timestamp() * 1000)
    anchor = feature_anchor(first_row["bar_open_time"], "1m", DEFAULT_FEATURE_SET)
    with BingXRestClient(simulator.base_url) as client:
        history = client.klines_range(SYMBOL, "1m", int(anchor.timestamp() * 1000), bar_ms + 60_000)
    features = compute_features_anchored(
        klines_to_frame(history, SYMBOL, "1m", "bingx_rest"), DEFAULT_FEATURE_SET
    )
    position_before = int(np.sign(first.position))
    obs = build_observation(feature_matrix(features.tail(1))[0], position_before)
    assert hashlib.sha256(obs.tobytes()).hexdigest() == first_row["observation_sha256"]


def test_an_absurd_order_quantity_is_blocked_by_risk_with_its_reasons(candidate_model, simulator):
    account = f"paper:absurd-{time.time_ns()}"
    settings = dataclasses.replace(
        _settings(simulator, candidate_model["model_id"], 5.0, account), order_quantity=1e6
    )
    with open_runtime().db.connect() as conn:
        save_risk_config(conn, RISK_DEFAULTS, created_by="test", reason="absurd-size test")
    # Whatever the policy wants, no order of a million XAUT goes out.
    original = LoadedPolicy.act
    LoadedPolicy.act = lambda self, observation: 2  # always long
    try:
        summary = asyncio.run(run_live_engine(settings, install_signals=False))
    finally:
        LoadedPolicy.act = original
    assert summary.decisions >= 2 and summary.orders == 0 and summary.position == 0.0
    assert summary.blocked == summary.decisions
    db = open_runtime().db
    blocks = read_frame(
        db, "SELECT DISTINCT rule FROM risk_events WHERE account_id = $1 AND kind = 'block'",
        [account],
    )["rule"].to_list()  # fmt: skip
    assert {"max_order_notional", "max_position_notional"} <= set(blocks)
    outcomes = read_frame(
        db, "SELECT outcome FROM live_decisions WHERE session_id = $1", [summary.session_id]
    )["outcome"].to_list()
    assert all(o.startswith("blocked: ") and "max_order_notional" in o for o in outcomes)


def test_an_engine_error_on_the_trade_path_halts_trading_with_its_reason(
    candidate_model, simulator, monkeypatch
):
    from goldrl_dagster.lib.execution.trader import Trader

    def broken(self, target, bar, *, decision_id, state=None):
        if bar.open_time_ms % 120_000:  # odd minutes: a failing SQL statement
            self.conn.execute("SELECT 1 / 0")
        raise ValueError("equity must be positive")  # even minutes: a Python error

    first_ms = int(datetime(2025, 3, 9, 12, 0, tzinfo=UTC).timestamp() * 1000)
    now = [first_ms]
    with BingXRestClient(simulator.base_url) as rest, _open_loop(
        simulator, candidate_model["model_id"], rest, clock=lambda: now[0]
    ) as loop:
        loop.seed_history(rest.klines_range(SYMBOL, "1m", loop.history_start_ms(first_ms),
                                            first_ms))  # fmt: skip
        monkeypatch.setattr(Trader, "rebalance", broken)
        for kline in rest.klines_range(SYMBOL, "1m", first_ms, first_ms + 2 * 60_000):
            now[0] = kline.open_time_ms + 61_000
            loop.on_closed_kline(kline)  # never raises: the error halts trading instead
        assert loop.summary.errors == 2 and loop.trading.trader.machine.state.value == "HALTED"
        session = loop.summary.session_id
    db = open_runtime().db
    halts = read_frame(
        db, "SELECT reason FROM risk_events WHERE session_id = $1 AND kind = 'state' "
        "ORDER BY event_id", [session],
    )["reason"].to_list()  # fmt: skip
    assert len(halts) == 2
    assert "ValueError: equity must be positive" in halts[0]
    assert "DivisionByZero" in halts[1] and str(first_ms + 60_000) in halts[1]
    outcomes = read_frame(
        db, "SELECT outcome FROM live_decisions WHERE session_id = $1", [session]
    )["outcome"].to_list()
    # The first decision is recorded with its error; the second went with the failed statement
    # (the halt names its bar).
    assert len(outcomes) == 1 and outcomes[0].startswith("error: engine error")
