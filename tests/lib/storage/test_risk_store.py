"""Risk in a real PostgreSQL: versioned limits, recorded blocks, a halt restored after a crash."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from goldrl_dagster.lib.risk import (
    DEFAULT_LIMITS,
    RiskBlock,
    RiskStateMachine,
    RiskVerdict,
    TradingState,
)
from goldrl_dagster.lib.storage.order_store import ensure_account
from goldrl_dagster.lib.storage.risk_store import (
    RiskConfigError,
    load_risk_config,
    record_blocks,
    record_transition,
    restore_machine,
    save_risk_config,
)

ACCOUNT, XAUT = "paper:risk", "XAUT-USDT"
NOW = 1_740_000_000_000


@pytest.fixture
def conn(clean_database):
    with clean_database.connect() as connection:
        ensure_account(connection, ACCOUNT, "paper", "paper")
        yield connection


def test_limits_are_immutable_versions(conn):
    assert save_risk_config(conn, DEFAULT_LIMITS, created_by="ops", reason="initial") == (
        DEFAULT_LIMITS.version
    )
    assert save_risk_config(conn, DEFAULT_LIMITS, created_by="ops", reason="again") == (
        DEFAULT_LIMITS.version
    )
    tighter = dataclasses.replace(DEFAULT_LIMITS, max_order_notional=100.0)
    with pytest.raises(RiskConfigError, match="new version"):
        save_risk_config(conn, tighter, created_by="ops", reason="tighten in place")
    newer = dataclasses.replace(tighter, version=DEFAULT_LIMITS.version + 1)
    save_risk_config(conn, newer, created_by="ops", reason="tighten")
    assert load_risk_config(conn) == newer
    assert load_risk_config(conn, DEFAULT_LIMITS.version) == DEFAULT_LIMITS
    with pytest.raises(RiskConfigError, match="version 99"):
        load_risk_config(conn, 99)
    with pytest.raises(RiskConfigError, match="who stored it"):
        save_risk_config(conn, newer, created_by=" ", reason="x")


def test_every_block_is_recorded_with_its_rule_value_and_limit(conn):
    save_risk_config(conn, DEFAULT_LIMITS, created_by="ops", reason="initial")
    verdict = RiskVerdict.of([
        RiskBlock("max_order_notional", 2_000_000_000.0, 10_000.0, "order notional too big"),
        RiskBlock("margin", 400_000.0, 100_000.0, "margin is not enough"),
    ])  # fmt: skip
    written = record_blocks(
        conn, ACCOUNT, XAUT, verdict, session_id=None, version=DEFAULT_LIMITS.version,
        order={"side": "BUY", "quantity": "1000000"},
    )  # fmt: skip
    assert written == 2
    rows = conn.execute(
        "SELECT kind, rule, value, limit_value, reason, risk_version FROM risk_events "
        "ORDER BY event_id"
    ).fetchall()
    assert rows == [
        ("block", "max_order_notional", "2000000000.0", "10000.0", "order notional too big",
         DEFAULT_LIMITS.version),
        ("block", "margin", "400000.0", "100000.0", "margin is not enough",
         DEFAULT_LIMITS.version),
    ]  # fmt: skip
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("DELETE FROM risk_events")
    conn.rollback()


def test_a_halt_survives_a_restart_with_its_cooldown(conn):
    save_risk_config(conn, DEFAULT_LIMITS, created_by="ops", reason="initial")
    machine = RiskStateMachine(DEFAULT_LIMITS)
    for n in range(DEFAULT_LIMITS.circuit_breaker_failures):
        tripped = machine.record_result(False, NOW + n)
    assert machine.state == TradingState.HALTED
    record_transition(conn, ACCOUNT, XAUT, tripped, machine, session_id=None,
                      version=DEFAULT_LIMITS.version)  # fmt: skip
    restored = restore_machine(conn, ACCOUNT, XAUT, DEFAULT_LIMITS)
    assert restored.state == TradingState.HALTED and restored.reason == "circuit_breaker"
    assert restored.cooldown_until_ms == machine.cooldown_until_ms
    assert restore_machine(conn, "paper:risk", "PAXG-USDT", DEFAULT_LIMITS).state == (
        TradingState.ACTIVE
    )
