"""A running paper session picks up new contract rules between two bars, from the rules schedule.

A private simulator (60x: a 1m bar closes every real second) changes XAUT's quantity step and
taker fee; the ``market/instruments`` asset (what the daily schedule runs) stores the new
version, whose NOTIFY wakes the engine (its periodic re-read is set far away, so only the
notification counts). The next orders are quantized to the new step, carry the new rules'
checksum and pay the new fee; the change is in the audit log and the session's log.

The policy goes long and flat in turn; it is held flat while the rules change, because a
position of 0.0567 would be off the new step (0.01): no order can carry its remainder below the
step (see ``live_engine.rules_watch``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest
from engine_sessions import paper_account, query, running_session, until
from live_engine_support import SYMBOL, register_candidate_model

from goldrl_dagster.defs.market_data.assets import instruments
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION
from goldrl_dagster.lib.rl.policy import LoadedPolicy
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.audit_log import append_audit, verify_audit_chain
from goldrl_dagster.lib.storage.instrument_rules import current_rules, rules_summary
from goldrl_dagster.lib.storage.market_store import sync_instruments
from live_engine.service import run_live_engine
from live_engine.settings import LiveSettings

MODEL = "ppo-rules"
ANCHOR = datetime(2025, 3, 10, tzinfo=UTC)
NEVER = 600.0  # a poll interval no test waits for: only the notification counts
QUANTITY = 0.0567  # 4 decimals: XAUT's step before the change (0.0001), cut to 0.05 after it
LONG, FLAT = ACTION_TO_POSITION.index(1), ACTION_TO_POSITION.index(0)


@pytest.fixture
def own_simulator() -> Iterator[SimulatorServer]:
    """A private simulator: this test changes its contract rules."""
    with SimulatorServer(
        seed=7, speed=60.0, anchor_ms=int(ANCHOR.timestamp() * 1000), ping_interval=2.0,
        push_interval=0.1,
    ) as sim:  # fmt: skip
        yield sim


def _settings(sim: SimulatorServer, account: str) -> LiveSettings:
    """A paper session of ``MODEL`` ordering 0.0567, its rules re-read on notification only."""
    return LiveSettings(
        instrument=SYMBOL, interval="1m", rest_url=sim.base_url, ws_url=sim.ws_url,
        model_id=MODEL, duration_seconds=60.0, paper_account=account, order_quantity=QUANTITY,
        heartbeat_seconds=1.0, rules_poll_seconds=NEVER, ood_guard="off",
    )  # fmt: skip


def _filled(session_id: str) -> list[tuple[str, Decimal, Decimal, Decimal, str, datetime]]:
    """(order id, quantity, price, fee, contract checksum, created) of filled orders, in order."""
    return query(
        "SELECT o.client_order_id, f.quantity, f.price, f.fee, o.contract_sha256, o.created_at "
        "FROM orders o JOIN fills f USING (client_order_id) WHERE o.session_id = %s "
        "ORDER BY o.created_at",
        session_id,
    )


def _position(session_id: str) -> float | None:
    """The position after the session's newest completed decision."""
    rows = query(
        "SELECT position_after FROM live_decisions WHERE session_id = %s AND outcome IS NOT NULL "
        "ORDER BY bar_open_time DESC LIMIT 1",
        session_id,
    )
    return rows[0][0] if rows else None


def _audit(session_id: str) -> list[tuple]:
    return query(
        "SELECT at, reason, before, after FROM audit_log WHERE action = 'live.contract_rules' "
        "AND after ->> 'session_id' = %s ORDER BY entry_id",
        session_id,
    )


@pytest.mark.slow
def test_new_contract_rules_are_used_for_the_next_order(
    clean_database, own_simulator, tmp_path, monkeypatch, caplog
):
    sim = own_simulator
    register_candidate_model(sim.base_url, MODEL, tmp_path)
    db = open_runtime().db
    old_rules = current_rules(db, SYMBOL)
    assert old_rules.spec.quantity_precision == 4
    assert old_rules.spec.taker_fee_rate == pytest.approx(0.0005)
    # Long, flat, long, ...: every bar sends an order, unless held flat.
    actions = itertools.cycle([LONG, FLAT])
    flat = {"held": False}
    monkeypatch.setattr(
        LoadedPolicy, "act", lambda self, obs: FLAT if flat["held"] else next(actions)
    )
    account = paper_account("rules")
    settings = _settings(sim, account)
    storage = GoldrlStorage()
    resources = {
        "storage": storage,
        "bingx": BingXMarketData(storage=storage, base_url=sim.base_url),
    }

    def refresh() -> dg.ExecuteInProcessResult:
        return dg.materialize([instruments], resources=resources, raise_on_error=True)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_live_engine(settings, stop=stop, install_signals=False))
        session_id = await until(lambda: running_session(account), "the session")
        await until(lambda: len(_filled(session_id)) >= 2, "two orders under the old rules")
        flat["held"] = True
        await until(lambda: _position(session_id) == 0, "a flat position")
        sim.market.set_contract_rules(SYMBOL, quantityPrecision="2", takerFeeRate="0.002")
        await asyncio.to_thread(refresh)
        await until(lambda: _audit(session_id), "the rules change in the audit log")
        ((changed_at, *_),) = _audit(session_id)
        flat["held"] = False
        await until(
            lambda: [row for row in _filled(session_id) if row[5] > changed_at],
            "an order after the change",
            timeout=20.0,
        )
        stop.set()
        return session_id, await task

    with caplog.at_level(logging.INFO, logger="goldrl.live"):
        session_id, summary = asyncio.run(scenario())

    new_rules = current_rules(db, SYMBOL)
    assert new_rules.spec.quantity_precision == 2
    assert new_rules.valid_from > old_rules.valid_from
    [(changed_at, reason, before, after)] = _audit(session_id)
    assert "notification" in reason
    assert before["quantity_precision"] == 4 and after["quantity_precision"] == 2
    assert float(after["taker_fee_rate"]) == pytest.approx(0.002)
    assert after["changed"] == ["quantity_precision", "taker_fee_rate"]
    assert after["content_sha256"] == new_rules.spec.content_sha256()
    assert after["position_off_step"] is None
    fills = _filled(session_id)
    earlier = [row for row in fills if row[5] < changed_at]
    later = [row for row in fills if row[5] > changed_at]
    assert earlier and later
    for _, quantity, price, fee, contract, _ in earlier:
        assert quantity == Decimal("0.0567")
        assert contract == old_rules.spec.content_sha256()
        assert float(fee) == pytest.approx(float(quantity * price) * 0.0005, rel=1e-6)
    for _, quantity, price, fee, contract, _ in later:
        assert quantity == Decimal("0.05")  # 0.0567 cut to the new step (0.01)
        assert contract == new_rules.spec.content_sha256()
        assert float(fee) == pytest.approx(float(quantity * price) * 0.002, rel=1e-6)
    assert summary.rules_changes == 1
    assert "contract rules of XAUT-USDT changed" in caplog.text
    assert "quantity_precision 4 -> 2" in caplog.text
    assert verify_audit_chain(db).ok


def test_a_session_started_after_a_rules_change_trades_on_the_newest_rules_from_its_first_order(
    clean_database, own_simulator, tmp_path, monkeypatch
):
    """The crash/restart story of the swap. A session that crashed between its audit entry and
    the swap (or was stopped) leaves nothing the next one needs: the next session opens on the
    rules stored now, and its start-up re-read (before the first bar) applies a newer version,
    here one valid from five minutes ahead of this machine's clock (the exchange's clock leads,
    so the version valid "now" here is still the old one). About 12 s: in the default suite."""
    sim = own_simulator
    register_candidate_model(sim.base_url, MODEL, tmp_path)
    db = open_runtime().db
    old = current_rules(db, SYMBOL).spec
    new = dataclasses.replace(old, quantity_precision=2)
    sync_instruments(db, [new], "simulator", now=datetime.now(UTC) + timedelta(minutes=5))
    with db.connect() as conn:  # the crashed session's entry: written, the swap never made
        append_audit(
            conn, actor="goldrl live (paper)", action="live.contract_rules",
            subject=f"paper:crashed {SYMBOL}", reason="contract rules applied (notification)",
            before={**rules_summary(old), "session_id": "crashed"},
            after={**rules_summary(new), "session_id": "crashed"},
        )  # fmt: skip
        conn.commit()
    monkeypatch.setattr(LoadedPolicy, "act", lambda self, obs: LONG)
    account = paper_account("rules-restart")
    settings = _settings(sim, account)

    async def scenario():
        stop = asyncio.Event()
        task = asyncio.create_task(run_live_engine(settings, stop=stop, install_signals=False))
        session_id = await until(lambda: running_session(account), "the session")
        await until(lambda: _filled(session_id), "the first order")
        stop.set()
        return session_id, await task

    session_id, summary = asyncio.run(scenario())
    [(_, quantity, _, _, contract, _), *_] = _filled(session_id)
    assert quantity == Decimal("0.05")  # 0.0567 on the new step from the very first order
    assert contract == new.content_sha256()
    [(_, reason, before, after)] = _audit(session_id)
    assert reason.endswith("applied (start-up)")
    assert before["quantity_precision"] == 4 and after["quantity_precision"] == 2
    assert summary.rules_changes == 1
    assert verify_audit_chain(db).ok
