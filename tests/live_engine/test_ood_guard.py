"""The live engine holds on out-of-distribution inputs (issue 11, "Drift").

One small PPO policy (ta_basic) trained on the simulator's Thursday 2025-03-06: its training
reference is that day's ``feature_statistics``, written here as the features assets write them
(and, narrowed, so that live values fall outside a feature's range). Sessions run against the
simulator (60x) and the real embedded PostgreSQL; the other tests drive a decision loop bar by
bar on a started paper session. Against the Thursday, the simulator's 03-09 and 03-10 bars are
in distribution on every feature (checked over both whole days when this test was written).
"""

import asyncio
import dataclasses
import itertools
import logging
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import typer
from live_engine_support import SYMBOL, register_candidate_model, write_training_statistics
from typer.testing import CliRunner

from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.drift.feature_drift import RollingFeatureDrift
from goldrl_dagster.lib.execution.trader import Trader
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.rl.policy import LoadedPolicy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.registry import load_model_record, record_model
from live_engine.cli import live
from live_engine.service import (
    LiveEngineError,
    LiveSummary,
    ModelRefusedError,
    consider_champion,
    guard_for,
    open_session,
    run_live_engine,
    verify_model,
)
from live_engine.settings import LiveSettings
from live_engine.store import SessionWriter, session_model_swaps, stop_session

MODEL, TWIN = "ppo-ood", "ppo-ood-twin"
TRAINED_END = datetime(2025, 3, 7, tzinfo=UTC)  # 24 hours: the reference day is 2025-03-06
NARROW = ("realized_vol_30", "natr_14")  # in reference (feature-set) order
HELD = "held: out of distribution: realized_vol_30, natr_14"


def _delete_statistics(days) -> None:
    with open_runtime().db.connect() as conn:
        conn.execute(
            "DELETE FROM feature_statistics WHERE fingerprint = %s AND instrument = %s "
            "AND day = ANY(%s)",
            (DEFAULT_FEATURE_SET.fingerprint, SYMBOL, list(days)),
        )
        conn.commit()


@pytest.fixture(scope="module")
def model(settings, database, simulator, tmp_path_factory):
    """The model, and its twin (same bundle, same dataset: the same training reference)."""
    register_candidate_model(
        simulator.base_url, MODEL, tmp_path_factory.mktemp("ood"), end=TRAINED_END, hours=24
    )
    runtime = open_runtime()
    record = load_model_record(runtime.db, MODEL)
    record_model(
        runtime.db, model_id=TWIN, artifact=record.artifact, dataset_hash=record.dataset_hash,
        feature_fingerprint=record.feature_fingerprint, algorithm="PPO", seed=0, card={},
    )  # fmt: skip
    days: list = []
    yield days
    _delete_statistics(days)  # no other test's model shares the day, but leave none behind


@pytest.fixture
def reference(model, simulator):
    """Write the model's training statistics (optionally narrowed); returns the writer."""

    def write(narrow: tuple[str, ...] = ()) -> None:
        days = write_training_statistics(simulator.base_url, MODEL, narrow=narrow)
        assert [d.isoformat() for d in days] == ["2025-03-06"]
        model[:] = days

    return write


def _settings(simulator, *, guard: str = "on", duration: float = 6.0, **changes) -> LiveSettings:
    return LiveSettings(
        instrument=SYMBOL,
        interval="1m",
        rest_url=simulator.base_url,
        ws_url=simulator.ws_url,
        model_id=MODEL,
        duration_seconds=duration,
        paper_account=f"paper:ood-{time.time_ns()}",
        heartbeat_seconds=1.0,
        ood_guard=guard,
        **changes,
    )


def _decisions(session_id: str) -> list[tuple[Any, ...]]:
    """(bar_open_time, target_position, position_after, outcome, client_order_id)."""
    with open_runtime().db.connect() as conn:
        return conn.execute(
            "SELECT bar_open_time, target_position, position_after, outcome, client_order_id "
            "FROM live_decisions WHERE session_id = %s ORDER BY bar_open_time",
            (session_id,),
        ).fetchall()


def _orders(session_id: str) -> list[tuple[Any, ...]]:
    with open_runtime().db.connect() as conn:
        return conn.execute(
            "SELECT side, quantity, state FROM orders WHERE session_id = %s ORDER BY created_at",
            (session_id,),
        ).fetchall()


def _always(monkeypatch, action: int) -> None:
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: action)


# -- sessions -------------------------------------------------------------------------------


def test_in_distribution_bars_trade_normally_under_the_guard(
    reference, simulator, monkeypatch, caplog
):
    reference()
    counter = itertools.count()  # short, flat, long, ...: a new target, so an order, every bar
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: next(counter) % 3)
    caplog.set_level(logging.INFO, logger="goldrl.live")
    summary = asyncio.run(run_live_engine(_settings(simulator), install_signals=False))
    rows = _decisions(summary.session_id)
    assert len(rows) >= 3 and summary.decisions == len(rows)
    assert not [r for r in rows if r[3].startswith("held")], rows
    assert summary.orders >= 2 and len(_orders(summary.session_id)) == summary.orders
    assert (summary.ood_guard, summary.ood_holds, summary.held) == ("on", 0, 0)
    assert summary.unguarded == {} and summary.ood_errors == 0
    assert "out-of-distribution guard on: 11 features against the training reference " \
           "2025-03-06…2025-03-06 (PSI over 1440 bars)" in caplog.text  # fmt: skip
    assert "out-of-distribution guard on: 0 bars held" in summary.describe()


def test_a_reference_that_excludes_live_values_holds_every_bar_and_sends_nothing(
    reference, simulator, monkeypatch
):
    reference(narrow=NARROW)
    called = []  # the policy would go long at every bar, if it were asked
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, observation: called.append(1) or 2)
    summary = asyncio.run(run_live_engine(_settings(simulator, duration=5.0),
                                          install_signals=False))  # fmt: skip
    rows = _decisions(summary.session_id)
    assert len(rows) >= 2
    assert {r[3] for r in rows} == {HELD}
    assert {(r[1], r[2], r[4]) for r in rows} == {(0, 0.0, None)}  # kept flat, no order id
    assert _orders(summary.session_id) == [] and summary.orders == 0 and summary.position == 0
    assert summary.ood_holds == summary.held == summary.decisions == len(rows)
    assert called == [], "the policy is not asked on inputs it never saw"
    assert f"out-of-distribution guard on: {len(rows)} bars held" in summary.describe()


def test_required_refuses_to_start_a_model_without_a_training_reference(model, simulator):
    _delete_statistics([datetime(2025, 3, 6).date()])
    with pytest.raises(LiveEngineError) as refused:
        asyncio.run(run_live_engine(_settings(simulator, guard="required"),
                                    install_signals=False))  # fmt: skip
    message = str(refused.value)
    assert message.startswith(
        f"model {MODEL} cannot be guarded against out-of-distribution inputs (--ood-guard "
        f"required): no training reference for model {MODEL}: no feature statistics stored "
        f"for {SYMBOL} 1m "
        "ta_basic v1 2025-03-06…2025-03-06"
    ), message
    assert message.endswith("or run with --ood-guard on")


# -- a decision loop, bar by bar --------------------------------------------------------------


@pytest.fixture
def opened(model, simulator):
    """Open a loop on a started paper session (no stream) with the guard its settings load;
    bars of 2025-03-09 12:00 on, each decided a second after it closed. (Session ids are
    unique in their first 12 characters, which name the session's client order ids.)"""
    opened_loops = []
    first_ms = int(datetime(2025, 3, 9, 12, 0, tzinfo=UTC).timestamp() * 1000)
    rest = BingXRestClient(simulator.base_url)

    def open_loop(guard: str = "on", **changes):
        runtime = open_runtime()
        settings = _settings(simulator, guard=guard, **changes)
        record = load_model_record(runtime.db, MODEL)
        verified = verify_model(runtime, settings, record)
        now = [first_ms]
        loop = open_session(
            runtime, settings, record, verified.policy, DEFAULT_FEATURE_SET,
            LiveSummary(uuid.uuid4().hex, MODEL, SYMBOL, ood_guard=guard), rest,
            clock=lambda: now[0], writer=SessionWriter(runtime.db, retries=0),
            guard=guard_for(runtime, settings, verified),
        )  # fmt: skip
        opened_loops.append(loop)
        loop.seed_history(rest.klines_range(SYMBOL, "1m", loop.history_start_ms(first_ms),
                                            first_ms))  # fmt: skip
        bars = rest.klines_range(SYMBOL, "1m", first_ms, first_ms + 6 * 60_000)

        def decide(kline) -> None:
            now[0] = kline.open_time_ms + 61_000
            loop.on_closed_kline(kline)

        return loop, bars, decide

    try:
        yield open_loop
    finally:
        for loop in opened_loops:
            loop.writer.run(lambda conn, loop=loop: loop.trading.use(conn).stop())
            loop.writer.close()
            stop_session(open_runtime().db, loop.summary.session_id, "test over")
        rest.close()


def test_a_held_bar_keeps_the_position_and_still_judges_the_loss_limits(
    reference, opened, monkeypatch
):
    reference()
    loop, bars, decide = opened()
    _always(monkeypatch, 2)
    decide(bars[0])  # in distribution: long
    assert loop.guard.active and loop.guard.monitor.bars_seen == 1
    # A new reference (the same model swapped in again) brings a new monitor: narrowed, it
    # holds the next bars while the policy would go short.
    reference(narrow=NARROW)
    first_guard = loop.guard
    loop.swap_model(loop.prepare_swap(MODEL, "poll"))
    assert loop.guard is not first_guard and loop.guard.monitor.bars_seen == 0
    _always(monkeypatch, 0)
    rebalanced = []
    original = Trader.rebalance

    def spy(self, target, bar, **kwargs):
        placement = original(self, target, bar, **kwargs)
        rebalanced.append((target, self.order_quantity, placement))
        return placement

    monkeypatch.setattr(Trader, "rebalance", spy)
    decide(bars[1])
    decide(bars[2])
    rows = _decisions(loop.summary.session_id)
    assert [r[3] for r in rows] == ["filled BUY 0.0500", HELD, HELD]
    assert [r[1] for r in rows] == [1, 1, 1], "a held decision's target is the position kept"
    assert [r[2] for r in rows] == [0.05, 0.05, 0.05], "held, never flattened"
    assert [r[4] is None for r in rows] == [False, True, True]
    assert _orders(loop.summary.session_id) == [("BUY", Decimal("0.0500"), "filled")]
    # The trader still ran on the held bars (loss limits, kill switch), with nothing to send.
    assert rebalanced == [(1, Decimal("0.0500"), None)] * 2
    assert loop.summary.ood_holds == loop.summary.held == 2 and loop.summary.orders == 1
    assert loop.guard.holds == 2 and first_guard.holds == 0


def test_off_trades_through_a_reference_that_would_hold(reference, opened, monkeypatch):
    reference(narrow=NARROW)
    loop, bars, decide = opened("off")
    _always(monkeypatch, 2)
    decide(bars[0])
    assert not loop.guard.active
    [row] = _decisions(loop.summary.session_id)
    assert row[3] == "filled BUY 0.0500" and loop.summary.ood_holds == 0
    assert "out-of-distribution guard off;" in loop.summary.describe()


def test_on_trades_a_model_without_a_reference_unguarded_and_says_so_once(
    model, opened, monkeypatch, caplog
):
    _delete_statistics([datetime(2025, 3, 6).date()])
    caplog.set_level(logging.INFO, logger="goldrl.live")
    loop, bars, decide = opened("on")
    _always(monkeypatch, 2)
    decide(bars[0])
    loop.swap_model(loop.prepare_swap(MODEL, "poll"))  # the same model again: no new warning
    decide(bars[1])
    outcomes = [r[3] for r in _decisions(loop.summary.session_id)]
    assert outcomes == ["filled BUY 0.0500", "no order"]
    assert list(loop.summary.unguarded) == [MODEL]
    assert loop.summary.unguarded[MODEL].startswith(
        f"no training reference for model {MODEL}: no feature statistics stored"
    )
    warnings = [r.getMessage() for r in caplog.records
                if "WITHOUT the out-of-distribution guard" in r.getMessage()]  # fmt: skip
    assert len(warnings) == 1 and "--ood-guard required would refuse" in warnings[0]
    assert f"UNGUARDED: {MODEL} (no training reference" in loop.summary.describe()


def test_required_refuses_a_swap_to_a_model_without_a_reference_and_records_it(
    reference, opened, monkeypatch
):
    reference()
    loop, bars, decide = opened("required")
    _always(monkeypatch, 2)
    decide(bars[0])
    _delete_statistics([datetime(2025, 3, 6).date()])
    with pytest.raises(ModelRefusedError, match="cannot be guarded against"):
        loop.prepare_swap(TWIN, "poll")
    settled = asyncio.run(consider_champion(loop, asyncio.to_thread, TWIN, "notification"))
    assert settled and loop.model.model_id == MODEL and loop.summary.refused_swaps == 1
    [row] = session_model_swaps(open_runtime().db, loop.summary.session_id)
    assert (row.from_model_id, row.to_model_id, row.outcome) == (MODEL, TWIN, "refused")
    assert row.reason.startswith(
        f"model {TWIN} cannot be guarded against out-of-distribution inputs (--ood-guard "
        "required): no training reference"
    )
    decide(bars[1])  # the guarded model trades on
    assert loop.guard.active and loop.guard.monitor.bars_seen == 2


def test_an_error_inside_the_guard_lets_the_bar_through_unguarded(
    reference, opened, monkeypatch, caplog
):
    reference(narrow=NARROW)  # it would hold, if it worked
    loop, bars, decide = opened()
    _always(monkeypatch, 2)

    def broken(self, values):
        raise ZeroDivisionError("a bug in the monitor")

    monkeypatch.setattr(RollingFeatureDrift, "update", broken)
    caplog.set_level(logging.INFO, logger="goldrl.live")
    decide(bars[0])
    decide(bars[1])
    outcomes = [r[3] for r in _decisions(loop.summary.session_id)]
    assert outcomes == ["filled BUY 0.0500", "no order"]
    assert loop.summary.ood_errors == 2 and loop.summary.ood_holds == 0
    assert loop.summary.errors == 0 and loop.trading.trader.machine.state.value == "ACTIVE"
    failures = [r for r in caplog.records if "guard failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None  # once an hour, not per bar
    assert "2 let through after a guard error" in loop.summary.describe()


def test_rolling_psi_alerts_are_logged_once_an_hour_per_feature_and_never_hold(
    reference, opened, monkeypatch, caplog
):
    reference()
    # Four bars in the window: a handful of values in eight bins is far from the reference.
    loop, bars, decide = opened(drift_window_bars=4)
    _always(monkeypatch, 1)
    caplog.set_level(logging.INFO, logger="goldrl.live")
    for kline in bars[:5]:
        decide(kline)
    outcomes = [r[3] for r in _decisions(loop.summary.session_id)]
    assert outcomes == ["no order"] * 5, "drift is logged, never held"
    alerts = [r.getMessage() for r in caplog.records if "feature drift alert" in r.getMessage()]
    # The first PSI comes with the window's second bar (min_bars = window // 2).
    assert alerts and "PSI over the last 2 bars (alert from 0.25)" in alerts[0]
    named = loop.summary.drift_alerts
    assert named and set(named) <= set(DEFAULT_FEATURE_SET.feature_names)
    for name in named:  # each feature once: five bars are well within the hour
        assert sum(f": {name} " in a or f", {name} " in a for a in alerts) == 1, (name, alerts)
    assert "PSI alerts on" in loop.summary.describe()


# -- settings and the command line ----------------------------------------------------------


def test_the_guard_setting_is_validated_and_defaults_to_on():
    paper = LiveSettings(SYMBOL, "1m", "http://x", "ws://x")
    assert (paper.ood_guard, paper.drift_window_bars) == ("on", 1440)
    assert dataclasses.replace(paper, mode="live").ood_guard == "on"
    for good in ("on", "required", "off"):
        assert dataclasses.replace(paper, ood_guard=good).ood_guard == good
    with pytest.raises(ValueError, match="ood_guard must be 'on', 'required' or 'off'"):
        dataclasses.replace(paper, ood_guard="sometimes")
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="drift_window_bars must be a positive whole"):
            dataclasses.replace(paper, drift_window_bars=bad)


def test_the_command_line_takes_the_guard_and_refuses_a_bad_value(simulator_env):
    app = typer.Typer()
    app.command()(live)
    result = CliRunner().invoke(app, ["--ood-guard", "sometimes"])
    assert result.exit_code == 2
    assert "ood_guard must be 'on', 'required' or 'off', got 'sometimes'" in result.output
    assert "--ood-guard" in CliRunner().invoke(app, ["--help"]).output


def test_live_mode_fails_closed_by_default_and_paper_guards_when_it_can(
    simulator_env, monkeypatch
):
    import live_engine.service as service

    seen = []

    async def record(settings, **_kwargs):
        seen.append(settings.ood_guard)
        raise ValueError("stop here")

    monkeypatch.setattr(service, "run_live_engine", record)
    app = typer.Typer()
    app.command()(live)
    for args in (["--mode", "live"], ["--mode", "paper"], ["--mode", "live", "--ood-guard", "on"]):
        CliRunner().invoke(app, args)
    assert seen == ["required", "on", "on"]
