"""The rules watcher's periodic re-read, on the real database with a stand-in session.

No notification is needed: ``check("poll")`` re-reads the newest stored version, applies it
(trader instrument, paper broker's fees), writes the audit entry, and flags a held position
that a coarser quantity step leaves off the step. The running-session path (NOTIFY) is
``test_contract_rules_reload.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from backtest_fixtures import XAUT

from goldrl_dagster.lib.storage.market_store import sync_instruments
from live_engine.rules_watch import RulesWatcher

T0 = datetime(2025, 3, 10, tzinfo=UTC)
CARD = {"cost_model": {"slippage_bps": 1.0, "slippage_range_fraction": 0.0, "charge_funding": True}}


def _session(db, held: Decimal) -> SimpleNamespace:
    """What the watcher and ``apply_rules`` touch of a decision loop, on the real database."""
    state = SimpleNamespace(position=SimpleNamespace(quantity=held))
    trader = SimpleNamespace(instrument=XAUT, read_state=lambda: state)

    def run(work):
        with db.connect() as conn:
            return work(conn)

    return SimpleNamespace(
        runtime=SimpleNamespace(db=db),
        settings=SimpleNamespace(instrument=XAUT.symbol, mode="paper"),
        trading=SimpleNamespace(
            trader=trader,
            paper=SimpleNamespace(costs=None),
            account_id="paper:rules-poll",
            use=lambda conn: trader,
        ),
        writer=SimpleNamespace(run=run),
        summary=SimpleNamespace(session_id="rules-poll", rules_changes=0),
        log=logging.LoggerAdapter(logging.getLogger("goldrl.live"), {}),
        policy=SimpleNamespace(card=CARD),
    )


async def _on_thread(work):
    return await asyncio.to_thread(work)


def _audit(db) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT reason, after FROM audit_log WHERE action = 'live.contract_rules' "
            "ORDER BY entry_id"
        ).fetchall()


def test_a_poll_applies_the_newest_rules_and_flags_a_position_off_the_new_step(
    clean_database, caplog
):
    db = clean_database
    sync_instruments(db, [XAUT], "simulator", now=T0)
    loop = _session(db, held=Decimal("0.0567"))
    watcher = RulesWatcher(loop, _on_thread, poll_seconds=600.0)  # type: ignore[arg-type]

    assert asyncio.run(watcher.check("poll")) is False  # the rules in force: nothing to do
    assert _audit(db) == []

    changed = dataclasses.replace(XAUT, quantity_precision=2, taker_fee_rate=0.002)
    sync_instruments(db, [changed], "simulator", now=T0 + timedelta(days=1))
    with caplog.at_level(logging.INFO, logger="goldrl.live"):
        assert asyncio.run(watcher.check("poll")) is True
    assert loop.trading.trader.instrument == changed
    assert loop.trading.paper.costs.taker_fee_rate == pytest.approx(0.002)
    assert loop.summary.rules_changes == 1 and watcher.applied == 1
    [(reason, after)] = _audit(db)
    assert reason.endswith("applied (poll)")
    assert after["changed"] == ["quantity_precision", "taker_fee_rate"]
    assert after["position_off_step"] == "0.0567"
    assert "is off XAUT-USDT's new quantity step 0.01" in caplog.text
    # Applied once: the next poll finds the same version in force.
    assert asyncio.run(watcher.check("poll")) is False
    assert len(_audit(db)) == 1
