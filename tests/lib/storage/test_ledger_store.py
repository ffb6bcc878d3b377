"""The ledger in a real PostgreSQL: each fill, fee, PnL and funding booked exactly once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.ledger import Position
from goldrl_dagster.lib.storage.ledger_store import (
    FillRecord,
    book_deposit,
    book_fill,
    book_funding,
    exchange_fill_key,
    ledger_cash,
    ledger_position,
    paper_fill_key,
)
from goldrl_dagster.lib.storage.order_store import OrderIntent, commit_intent, ensure_account

ACCOUNT, XAUT = "paper:ledger", "XAUT-USDT"
T0 = datetime(2025, 3, 1, tzinfo=UTC)
D = Decimal


@pytest.fixture
def conn(clean_database):
    with clean_database.connect() as connection:
        ensure_account(connection, ACCOUNT, "paper", "paper")
        for n in range(4):
            commit_intent(
                connection,
                OrderIntent(
                    f"o-{n}",
                    ACCOUNT,
                    None,
                    None,
                    "operator",
                    XAUT,
                    "BUY",
                    "MARKET",
                    D("1"),
                    None,
                    False,
                    "ab" * 32,
                ),
            )
        yield connection


def fill(key, side, qty, price, fee="0.1", order="o-0") -> FillRecord:
    return FillRecord(key, order, ACCOUNT, XAUT, side, D(qty), D(price), D(fee), T0, "paper")


def test_fills_move_the_position_and_book_fees_and_pnl_once(conn):
    book_deposit(conn, ACCOUNT, D("1000"), "opening", T0)
    assert book_fill(conn, fill("f1", "BUY", "2", "100")).position == Position(D(2), D(100))
    effect = book_fill(conn, fill("f2", "SELL", "1", "110"))
    assert effect.realised_pnl == D(10)
    assert book_fill(conn, fill("f2", "SELL", "1", "110")) is None  # a replay books nothing
    assert book_deposit(conn, ACCOUNT, D("1000"), "opening", T0) is False
    assert ledger_position(conn, ACCOUNT, XAUT) == Position(D(1), D(100))
    assert ledger_cash(conn, ACCOUNT) == D("1000") + D(10) - D("0.2")
    kinds = conn.execute(
        "SELECT kind, count(*) FROM ledger_entries GROUP BY kind ORDER BY kind"
    ).fetchall()
    assert kinds == [("deposit", 1), ("fee", 2), ("realised_pnl", 1)]
    # Deposit keys are per account: another account's opening deposit is its own.
    ensure_account(conn, "paper:other", "paper", "paper")
    assert book_deposit(conn, "paper:other", D("50"), "opening", T0) is True
    assert ledger_cash(conn, "paper:other") == D("50")


def test_funding_is_settled_once_per_time_and_skips_flat_positions(conn):
    assert book_funding(conn, ACCOUNT, XAUT, T0, D("0.0001"), D("100")) is None  # flat
    book_fill(conn, fill("f1", "SELL", "2", "100", fee="0"))
    paid = book_funding(conn, ACCOUNT, XAUT, T0, D("0.0001"), D("100"))
    assert paid == D("0.02")  # a short receives a positive rate
    assert book_funding(conn, ACCOUNT, XAUT, T0, D("0.0001"), D("100")) is None
    assert ledger_cash(conn, ACCOUNT) == D("0.02")


def test_concurrent_bookings_of_many_fills_serialise_on_the_position(clean_database, conn):
    def book(n: int) -> None:
        with clean_database.connect() as mine:
            for _ in range(2):  # each fill twice: replays must be harmless
                book_fill(mine, fill(paper_fill_key(f"o-{n % 4}", n), "BUY", "0.1", "100"))

    threads = [threading.Thread(target=book, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ledger_position(conn, ACCOUNT, XAUT) == Position(D("2.0"), D("100"))
    assert conn.execute("SELECT count(*) FROM fills").fetchone()[0] == 20
    assert ledger_cash(conn, ACCOUNT) == D("-2.0")  # 20 fees of 0.1
    # The running balance the database keeps equals the sum of the entries it was fed.
    total, entries = conn.execute(
        "SELECT sum(amount), count(*) FROM ledger_entries WHERE account_id = %s", (ACCOUNT,)
    ).fetchone()
    balance = conn.execute(
        "SELECT cash, entries FROM ledger_balances WHERE account_id = %s", (ACCOUNT,)
    ).fetchone()
    assert balance == (total, entries) and entries == 20


def test_exchange_fill_keys_are_stable_and_distinct():
    a = exchange_fill_key("1901", 1_700_000_000_000, D("2650.10"), D("0.50"))
    assert a == exchange_fill_key("1901", 1_700_000_000_000, D("2650.1"), D("0.5"))
    assert a != exchange_fill_key("1901", 1_700_000_000_001, D("2650.1"), D("0.5"))


def test_bad_fill_records_are_refused():
    with pytest.raises(ValueError, match="source"):
        FillRecord("k", "o", ACCOUNT, XAUT, "BUY", D(1), D(1), D(0), T0, "guess")
    with pytest.raises(ValueError, match="price"):
        FillRecord("k", "o", ACCOUNT, XAUT, "BUY", D(1), D("NaN"), D(0), T0, "paper")
