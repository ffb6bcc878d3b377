"""Paper funding at the stored settlement times, on the position held at each of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.funding import settle_funding
from goldrl_dagster.lib.storage.ledger_store import FillRecord, book_fill, ledger_cash
from goldrl_dagster.lib.storage.order_store import OrderIntent, commit_intent, ensure_account

ACCOUNT, XAUT = "paper:funding", "XAUT-USDT"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
H8 = timedelta(hours=8)
D = Decimal


@pytest.fixture
def conn(clean_database):
    with clean_database.connect() as connection:
        ensure_account(connection, ACCOUNT, "paper", "paper")
        commit_intent(
            connection,
            OrderIntent("f-1", ACCOUNT, None, None, "operator", XAUT, "BUY", "MARKET", D("3"),
                        None, False, "ab" * 32),
        )  # fmt: skip
        for n in range(4):  # settlements at T0, T0+8h, T0+16h, T0+24h and their mark prices
            at = T0 + n * H8
            connection.execute(
                "INSERT INTO funding_rates (instrument, funding_time, funding_rate, source) "
                "VALUES (%s, %s, %s, 'simulator')", (XAUT, at, D("0.0001") * (n + 1)),
            )  # fmt: skip
            if n != 3:  # the last settlement has no stored mark price
                connection.execute(
                    "INSERT INTO mark_price_candles (instrument, interval, open_time, open, high, "
                    "low, close, volume, source) VALUES (%s, '1m', %s, 1, 1, 1, %s, 0, "
                    "'simulator')", (XAUT, at - timedelta(minutes=1), 2000.0 + n),
                )  # fmt: skip
        connection.commit()
        yield connection


def fill(conn, key, side, qty, at):
    book_fill(conn, FillRecord(key, "f-1", ACCOUNT, XAUT, side, D(qty), D("2000"), D(0), at,
                               "paper"))  # fmt: skip


def test_each_settlement_uses_the_position_held_then_and_books_once(conn):
    fill(conn, "a", "BUY", "2", T0 + timedelta(hours=1))  # long 2 from 01:00
    fill(conn, "b", "SELL", "3", T0 + timedelta(hours=12))  # short 1 from 12:00
    report = settle_funding(conn, ACCOUNT, XAUT, since=T0 - H8, until=T0 + 3 * H8)
    # T0: flat (nothing booked); T0+8h: long 2 pays 2 × 2001 × 0.0002; T0+16h: short 1
    # receives 1 × 2002 × 0.0003; T0+24h: no mark price stored, reported, not guessed.
    assert report.booked == [
        (T0 + H8, D("-0.8004")),
        (T0 + 2 * H8, D("0.6006")),
    ]
    assert report.missing_mark == [T0 + 3 * H8]
    assert ledger_cash(conn, ACCOUNT) == D("-0.8004") + D("0.6006")
    again = settle_funding(conn, ACCOUNT, XAUT, since=T0 - H8, until=T0 + 3 * H8)
    assert again.booked == [] and ledger_cash(conn, ACCOUNT) == D("-0.1998")


def test_only_the_window_is_settled(conn):
    fill(conn, "a", "BUY", "1", T0 - timedelta(hours=1))
    report = settle_funding(conn, ACCOUNT, XAUT, since=T0, until=T0 + H8)
    assert [t for t, _ in report.booked] == [T0 + H8]
