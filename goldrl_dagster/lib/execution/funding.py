"""Funding for the paper account, at the exchange's real settlement times and rates.

Live accounts are charged by BingX (reconciled from its income records); a paper account is
charged here from the market data goldrl stores: every settlement in ``funding_rates`` for the
instrument, applied to the position the account held *at that time* (replayed from its fills),
at the mark price of the minute ending then (``mark_price_candles``). Each settlement books once,
so settling again after a restart changes nothing; a settlement without a stored mark price is
reported as missing rather than guessed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import psycopg

from goldrl_dagster.lib.storage.ledger_store import book_funding, position_at

log = logging.getLogger(__name__)


@dataclass
class FundingReport:
    """What one settlement pass did.

    Attributes:
        booked: ``(funding time, amount)`` of each settlement booked now (negative: paid).
        missing_mark: Settlement times skipped because no mark price is stored for them.
    """

    booked: list[tuple[datetime, Decimal]] = field(default_factory=list)
    missing_mark: list[datetime] = field(default_factory=list)


def settle_funding(
    conn: psycopg.Connection,
    account_id: str,
    instrument: str,
    *,
    since: datetime,
    until: datetime,
) -> FundingReport:
    """Book every stored settlement with ``since < funding_time <= until`` on the paper account."""
    report = FundingReport()
    settlements = conn.execute(
        "SELECT f.funding_time, f.funding_rate, m.close FROM funding_rates f "
        "LEFT JOIN mark_price_candles m ON m.instrument = f.instrument AND m.interval = '1m' "
        "AND m.open_time = f.funding_time - interval '1 minute' "
        "WHERE f.instrument = %s AND f.funding_time > %s AND f.funding_time <= %s "
        "ORDER BY f.funding_time",
        (instrument, since, until),
    ).fetchall()
    conn.commit()
    for funding_time, rate, mark in settlements:
        if mark is None:
            report.missing_mark.append(funding_time)
            log.warning("%s funding at %s: no mark price stored; not settled", instrument,
                        funding_time.isoformat())  # fmt: skip
            continue
        held = position_at(conn, account_id, instrument, funding_time)
        amount = book_funding(
            conn, account_id, instrument, funding_time, Decimal(repr(rate)),
            Decimal(repr(mark)), position=held,
        )  # fmt: skip
        if amount is not None:
            report.booked.append((funding_time, amount))
    return report
