"""The trader and an order the venue accepted but whose fills are not booked yet.

BingX answers a placement with an acknowledgement only (no status, no fills): the order is
``accepted`` and its fills reach the ledger when the reconciler (or the account stream) books
them. A decision on the next bar may come first.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from goldrl_dagster.lib.execution.broker import OrderView
from goldrl_dagster.lib.execution.order_states import OrderState
from goldrl_dagster.lib.execution.trader import Bar, Trader, TradingRefusedError
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import DEFAULT_LIMITS, RiskStateMachine
from goldrl_dagster.lib.storage.ledger_store import FillRecord, book_deposit
from goldrl_dagster.lib.storage.order_store import StoredOrder, ensure_account

XAUT, ACCOUNT = "XAUT-USDT", "bingx:acks"
SPEC = InstrumentSpec(XAUT, "XAUT", "USDT", 2, 4, 0.0005, 2.0, 0.0002, 0.0005, 50, 50)
T0 = 1_741_000_000_000
D = Decimal


class AcknowledgingVenue:
    """Acknowledges and fills every order at once, answering placements as briefly as BingX."""

    account_id = ACCOUNT
    mode = "live"
    venue = "stub"

    def __init__(self) -> None:
        self.sent: list[StoredOrder] = []

    def submit(self, order: StoredOrder) -> OrderView:
        self.sent.append(order)
        return OrderView(order.client_order_id, f"{len(self.sent)}", None, None, None)

    def query(self, order: StoredOrder) -> OrderView | None:
        return OrderView(order.client_order_id, order.exchange_order_id or "", OrderState.FILLED,
                         order.quantity, D("2650"))  # fmt: skip

    def cancel(self, order: StoredOrder) -> OrderView | None:
        return self.query(order)

    def fills(self, order: StoredOrder) -> list[FillRecord]:
        return []

    def position(self, instrument: str) -> Decimal:
        return sum((o.quantity if o.side == "BUY" else -o.quantity for o in self.sent), D(0))

    def balance(self) -> Decimal | None:
        return None


@pytest.fixture
def trader(clean_database):
    conn = clean_database.connect()
    ensure_account(conn, ACCOUNT, "live", "stub")
    book_deposit(conn, ACCOUNT, D("100000"), "opening", datetime.now(UTC))
    conn.execute(
        "INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
        "VALUES ('acks', 'live', %s, 'ws://x')", (XAUT,),
    )  # fmt: skip
    conn.commit()
    now = [T0]
    trader = Trader(
        conn, AcknowledgingVenue(), SPEC, DEFAULT_LIMITS, RiskStateMachine(DEFAULT_LIMITS),
        session_id="acks", order_quantity=D("0.05"), leverage=2, clock=lambda: now[0],
    )  # fmt: skip
    trader.now = now
    yield trader
    conn.close()


def decide(trader: Trader, target: int, n: int):
    open_ms = T0 + n * 60_000
    trader.now[0] = open_ms + 61_000
    return trader.rebalance(target, Bar(open_ms, open_ms + 60_000, D("2650")), decision_id=None)


def test_an_accepted_order_not_yet_booked_is_not_sent_again(trader):
    assert trader.start().passed
    first = decide(trader, 1, 0)
    assert first.result.order.state == OrderState.ACCEPTED  # BingX's brief answer
    # The next bar, before any reconciliation booked the fill; refusing is fine too.
    with contextlib.suppress(TradingRefusedError):
        decide(trader, 1, 1)
    assert len(trader.broker.sent) == 1, [o.client_order_id for o in trader.broker.sent]
