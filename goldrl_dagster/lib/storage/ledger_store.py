"""The ledger in PostgreSQL: fills, fees, realised PnL, funding and deposits, booked once each.

Each booking is one transaction keyed for idempotency: a fill by its ``fill_key``, its fee and
realised PnL by keys derived from it, a funding settlement by account, instrument and time. A
replayed push, a fill seen both on the stream and in a REST report, or a retried write after a
database restart therefore books nothing twice. The position row is locked while a fill is
applied, so concurrent bookings serialise. Cash is the sum of the account's entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg

from goldrl_dagster.lib.execution.ledger import FillEffect, Position, apply_fill, funding_payment

FILL_SOURCES = ("paper", "stream", "rest")


@dataclass(frozen=True)
class FillRecord:
    """One execution to book.

    Attributes:
        fill_key: Its identity (see :func:`exchange_fill_key` and :func:`paper_fill_key`).
        client_order_id: The order it belongs to (recorded in ``orders``).
        account_id: The trading account.
        instrument: Exchange symbol.
        side: ``BUY`` or ``SELL``.
        quantity: Base quantity (> 0).
        price: Execution price (> 0).
        fee: Fee paid (positive; a rebate is negative).
        filled_at: Execution time.
        source: ``paper``, ``stream`` or ``rest``.
    """

    fill_key: str
    client_order_id: str
    account_id: str
    instrument: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    filled_at: datetime
    source: str

    def __post_init__(self) -> None:
        if self.source not in FILL_SOURCES:
            raise ValueError(f"source must be one of {FILL_SOURCES}, got {self.source!r}")
        for name in ("quantity", "price", "fee"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite():
                raise ValueError(f"{name} must be a finite Decimal, got {value!r}")


def exchange_fill_key(exchange_order_id: str, time_ms: int, price: Decimal, qty: Decimal) -> str:
    """Identity of an exchange fill (BingX gives fills no id of their own)."""
    return f"x:{exchange_order_id}:{time_ms}:{price.normalize()}:{qty.normalize()}"


def paper_fill_key(client_order_id: str, sequence: int) -> str:
    """Identity of the ``sequence``-th paper fill of an order."""
    return f"p:{client_order_id}:{sequence}"


def _locked_position(conn: psycopg.Connection, account_id: str, instrument: str) -> Position:
    conn.execute(
        "INSERT INTO ledger_positions (account_id, instrument) VALUES (%s, %s) "
        "ON CONFLICT DO NOTHING",
        (account_id, instrument),
    )
    quantity, entry = conn.execute(
        "SELECT quantity, entry_price FROM ledger_positions "
        "WHERE account_id = %s AND instrument = %s FOR UPDATE",
        (account_id, instrument),
    ).fetchone()
    return Position(quantity, entry)


def _entry(
    conn: psycopg.Connection,
    key: str,
    account_id: str,
    instrument: str | None,
    kind: str,
    amount: Decimal,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> bool:
    row = conn.execute(
        "INSERT INTO ledger_entries (entry_key, account_id, instrument, kind, amount, at, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (entry_key) DO NOTHING RETURNING 1",
        (key, account_id, instrument, kind, amount, at, json.dumps(detail or {}, default=str)),
    ).fetchone()
    return row is not None


def book_fill(conn: psycopg.Connection, fill: FillRecord) -> FillEffect | None:
    """Book a fill: the fill row, the position, the fee and the realised PnL, atomically.

    Returns:
        What the fill did, or None when it was booked before (nothing written).
    """
    inserted = conn.execute(
        "INSERT INTO fills (fill_key, client_order_id, account_id, instrument, side, quantity, "
        "price, fee, filled_at, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (fill_key) DO NOTHING RETURNING 1",
        (
            fill.fill_key, fill.client_order_id, fill.account_id, fill.instrument, fill.side,
            fill.quantity, fill.price, fill.fee, fill.filled_at, fill.source,
        ),
    ).fetchone()  # fmt: skip
    if inserted is None:
        conn.rollback()
        return None
    position = _locked_position(conn, fill.account_id, fill.instrument)
    effect = apply_fill(position, fill.side, fill.quantity, fill.price)
    conn.execute(
        "UPDATE ledger_positions SET quantity = %s, entry_price = %s, updated_at = now() "
        "WHERE account_id = %s AND instrument = %s",
        (
            effect.position.quantity, effect.position.entry_price, fill.account_id,
            fill.instrument,
        ),
    )  # fmt: skip
    detail = {"client_order_id": fill.client_order_id}
    if fill.fee != 0:
        _entry(conn, f"fee:{fill.fill_key}", fill.account_id, fill.instrument, "fee",
               -fill.fee, fill.filled_at, detail)  # fmt: skip
    if effect.realised_pnl != 0:
        _entry(conn, f"pnl:{fill.fill_key}", fill.account_id, fill.instrument, "realised_pnl",
               effect.realised_pnl, fill.filled_at, detail)  # fmt: skip
    conn.commit()
    return effect


def book_funding(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    funding_time: datetime,
    rate: Decimal,
    mark_price: Decimal,
    *,
    position: Position | None = None,
) -> Decimal | None:
    """Settle one funding event (once per account, instrument and time).

    Args:
        conn: Open connection.
        account_id: The trading account.
        instrument: Exchange symbol.
        funding_time: The settlement time.
        rate: The settled funding rate.
        mark_price: The mark price at settlement.
        position: The position held at ``funding_time`` (the recorded position when omitted).

    Returns:
        The amount booked (negative: paid), or None when this settlement was booked before or
        the position was flat.
    """
    locked = _locked_position(conn, account_id, instrument)
    position = locked if position is None else position
    if position.is_flat:
        conn.rollback()
        return None
    amount = -funding_payment(position, mark_price, rate)
    key = f"funding:{account_id}:{instrument}:{int(funding_time.timestamp() * 1000)}"
    detail = {"rate": str(rate), "mark_price": str(mark_price), "quantity": str(position.quantity)}
    if not _entry(conn, key, account_id, instrument, "funding", amount, funding_time, detail):
        conn.rollback()
        return None
    conn.commit()
    return amount


def book_funding_income(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    funding_time: datetime,
    amount: Decimal,
    detail: dict[str, Any] | None = None,
) -> bool:
    """Book a settlement the exchange charged or paid (once per account, instrument and time).

    The key is :func:`book_funding`'s, so a settlement is never booked twice however it arrived.

    Returns:
        True when booked now.
    """
    key = f"funding:{account_id}:{instrument}:{int(funding_time.timestamp() * 1000)}"
    booked = _entry(conn, key, account_id, instrument, "funding", amount, funding_time, detail)
    conn.commit()
    return booked


def book_deposit(
    conn: psycopg.Connection, account_id: str, amount: Decimal, key: str, at: datetime
) -> bool:
    """Credit (or debit) the account once under ``key`` (per account); True when booked now."""
    booked = _entry(conn, f"deposit:{account_id}:{key}", account_id, None, "deposit", amount, at)
    conn.commit()
    return booked


def ledger_position(conn: psycopg.Connection, account_id: str, instrument: str) -> Position:
    """The recorded position (flat when none was ever booked)."""
    row = conn.execute(
        "SELECT quantity, entry_price FROM ledger_positions "
        "WHERE account_id = %s AND instrument = %s",
        (account_id, instrument),
    ).fetchone()
    conn.commit()
    return Position() if row is None else Position(row[0], row[1])


def position_at(
    conn: psycopg.Connection, account_id: str, instrument: str, at: datetime
) -> Position:
    """The position held at ``at``: every fill up to and including that time, replayed."""
    rows = conn.execute(
        "SELECT side, quantity, price FROM fills WHERE account_id = %s AND instrument = %s "
        "AND filled_at <= %s ORDER BY filled_at, fill_key",
        (account_id, instrument, at),
    ).fetchall()
    conn.commit()
    position = Position()
    for side, quantity, price in rows:
        position = apply_fill(position, side, quantity, price).position
    return position


def first_fill_time(
    conn: psycopg.Connection, account_id: str, instrument: str
) -> datetime | None:
    """When the account first traded the instrument (None: never)."""
    row = conn.execute(
        "SELECT min(filled_at) FROM fills WHERE account_id = %s AND instrument = %s",
        (account_id, instrument),
    ).fetchone()
    conn.commit()
    return row[0]


def ledger_cash(conn: psycopg.Connection, account_id: str) -> Decimal:
    """Cash of the account: deposits + realised PnL − fees + funding, all instruments.

    Read from the running balance the database keeps with every entry (migration 0011).
    """
    row = conn.execute(
        "SELECT cash FROM ledger_balances WHERE account_id = %s", (account_id,)
    ).fetchone()
    conn.commit()
    return Decimal(0) if row is None else Decimal(row[0])
