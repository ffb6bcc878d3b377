"""Each alert fires on a planted condition in PostgreSQL and stays quiet otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from goldrl_dagster.lib.alerts.conditions import (
    FailedCheck,
    check_alerts,
    evaluate_alerts,
    gap_alerts,
    heartbeat_alerts,
    reconciliation_alerts,
    reject_rate_alerts,
)
from goldrl_dagster.lib.storage.heartbeat_store import Heartbeat, upsert_heartbeat

SYMBOL = "XAUT-USDT"
ACCOUNT = "paper:alerts"


def _healthy_sli() -> dict:
    good = {"5m": [0, 5], "30m": [0, 30], "1h": [0, 60], "6h": [0, 360]}
    return {"decision_latency": dict(good), "ingestion_lag": dict(good)}


def _db_now(db) -> datetime:
    with db.connect() as conn:
        return conn.execute("SELECT now()").fetchone()[0]


def _session(db, session_id: str, *, stopped: bool = False) -> None:
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO live_sessions (session_id, mode, instrument, stream_url, account_id, "
            "stopped_at) VALUES (%s, 'paper', %s, 'ws://sim', %s, %s)",
            (session_id, SYMBOL, ACCOUNT, datetime.now(UTC) if stopped else None),
        )
        conn.commit()


def _beat(db, session_id: str, sli: dict | None = None) -> None:
    upsert_heartbeat(db, Heartbeat(
        session_id=session_id, instrument=SYMBOL, mode="paper", account_id=ACCOUNT,
        model_id="ppo-1", stage=None, heartbeat_seconds=10.0, decisions=60, orders=3,
        order_rejects=0, reconnects=0, last_bar_open_time=None, reconciliation_passed=True,
        equity=100_000.0, position=0.0, exposure=0.0, degraded=False,
        health={"sli": sli or _healthy_sli()},
    ))  # fmt: skip


@pytest.fixture
def db(clean_database):
    with clean_database.connect() as conn:
        conn.execute(
            "INSERT INTO trading_accounts (account_id, mode, venue) VALUES (%s, 'paper', 'paper')",
            (ACCOUNT,),
        )
        conn.commit()
    return clean_database


def test_a_healthy_platform_raises_no_alert(db):
    _session(db, "s-ok")
    _beat(db, "s-ok")
    _orders(db, filled=20, rejected=0)
    _reconciliation(db, passed=True)
    _gap(db, status="healed", found_ago=timedelta(hours=3))
    _gap(db, status="found", found_ago=timedelta(minutes=10), start_minute=30)  # being healed
    assert evaluate_alerts(db, _db_now(db)) == []


def test_slow_decisions_in_the_heartbeat_page(db):
    _session(db, "s-slow")
    sli = _healthy_sli()
    sli["decision_latency"] = {"5m": [3, 5], "30m": [8, 30], "1h": [12, 60], "6h": [12, 360]}
    _beat(db, "s-slow", sli)
    [alert] = heartbeat_alerts(db, _db_now(db))
    assert alert.key == f"decision_latency:{ACCOUNT}:{SYMBOL}" and alert.severity == "page"
    assert "12/60 bad events over 1h" in alert.summary


def test_late_bars_in_the_heartbeat_page(db):
    _session(db, "s-lag")
    sli = _healthy_sli()
    sli["ingestion_lag"] = {"5m": [5, 5], "30m": [10, 30], "1h": [20, 60], "6h": [20, 360]}
    _beat(db, "s-lag", sli)
    assert [a.slo for a in heartbeat_alerts(db, _db_now(db))] == ["ingestion_lag"]


def test_a_silent_running_session_is_stale_and_a_stopped_one_is_not(db):
    _session(db, "s-dead")
    _beat(db, "s-dead")
    _session(db, "s-stopped", stopped=True)
    _beat(db, "s-stopped")
    now = _db_now(db)
    assert heartbeat_alerts(db, now + timedelta(seconds=25)) == []  # within 30 s: fresh
    [alert] = heartbeat_alerts(db, now + timedelta(seconds=120))
    assert alert.slo == "stale_heartbeat" and "s-dead" in alert.summary


def _orders(db, *, filled: int, rejected: int, ago: timedelta = timedelta(minutes=2)) -> None:
    now = _db_now(db)
    with db.connect() as conn:
        for i in range(filled + rejected):
            conn.execute(
                "INSERT INTO orders (client_order_id, account_id, purpose, instrument, side, "
                "order_type, quantity, reduce_only, contract_sha256, state, created_at) "
                "VALUES (%s, %s, 'decision', %s, 'BUY', 'MARKET', 0.05, false, 'x', %s, %s)",
                (f"o-{ago.seconds}-{i}", ACCOUNT, SYMBOL,
                 "rejected" if i < rejected else "filled", now - ago),
            )  # fmt: skip
        conn.commit()


def test_a_burst_of_rejected_orders_pages(db):
    _orders(db, filled=10, rejected=0, ago=timedelta(minutes=40))
    assert reject_rate_alerts(db, _db_now(db)) == []
    _orders(db, filled=2, rejected=3)
    [alert] = reject_rate_alerts(db, _db_now(db))
    assert alert.key == f"order_reject_rate:{ACCOUNT}:{SYMBOL}"
    assert "3/15 bad events over 1h" in alert.summary


def _reconciliation(db, *, passed: bool, ago: timedelta = timedelta(minutes=1)) -> None:
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO reconciliation_reports (account_id, instrument, trigger, orders_checked, "
            "orders_matched, orders_repaired, orders_unresolved, position_delta, passed, "
            "duration_ms, created_at) VALUES (%s, %s, 'periodic', 1, 0, 0, %s, %s, %s, 5, %s)",
            (ACCOUNT, SYMBOL, 0 if passed else 1, 0 if passed else 0.05, passed,
             _db_now(db) - ago),
        )  # fmt: skip
        conn.commit()


def test_only_the_latest_recent_reconciliation_counts(db):
    _reconciliation(db, passed=False, ago=timedelta(hours=3))  # long ago: not an alert now
    assert reconciliation_alerts(db, _db_now(db)) == []
    _reconciliation(db, passed=False, ago=timedelta(minutes=5))
    [alert] = reconciliation_alerts(db, _db_now(db))
    assert "1 order(s) unresolved" in alert.summary
    _reconciliation(db, passed=True)  # a later pass clears it
    assert reconciliation_alerts(db, _db_now(db)) == []


def _gap(db, *, status: str, found_ago: timedelta, start_minute: int = 0) -> None:
    start = datetime(2025, 3, 9, 12, start_minute, tzinfo=UTC)
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO candle_gaps (instrument, interval, gap_start, gap_end, missing_bars, "
            "status, first_found_at) VALUES (%s, '1m', %s, %s, 3, %s, %s)",
            (SYMBOL, start, start + timedelta(minutes=3), status, _db_now(db) - found_ago),
        )
        conn.commit()


def test_gaps_open_too_long_or_unrecoverable_open_a_ticket(db):
    _gap(db, status="found", found_ago=timedelta(minutes=5))
    assert gap_alerts(db, _db_now(db)) == []
    _gap(db, status="healing", found_ago=timedelta(hours=2), start_minute=10)
    _gap(db, status="unrecoverable", found_ago=timedelta(days=2), start_minute=20)
    [alert] = gap_alerts(db, _db_now(db))
    assert alert.key == f"open_candle_gaps:{SYMBOL}:1m" and alert.severity == "ticket"
    assert "2 open candle gap(s), 6 missing bar(s)" in alert.summary
    assert "(1 unrecoverable)" in alert.summary


def test_failed_checks_page_on_error_and_ticket_on_warn():
    alerts = check_alerts([
        FailedCheck("market/candles", "candles_quality", "ERROR", "XAUT-USDT|2025-03-09", "bad"),
        FailedCheck("monitoring/feature_drift", "drift", "WARN"),
    ])  # fmt: skip
    assert [(a.key, a.severity) for a in alerts] == [
        ("failed_asset_check:market/candles:candles_quality", "page"),
        ("failed_asset_check:monitoring/feature_drift:drift", "ticket"),
    ]
    assert "partition XAUT-USDT|2025-03-09" in alerts[0].summary
    assert check_alerts([]) == []
