"""The simulator's matching engine, margin and funding, on a clock the test moves."""

from __future__ import annotations

from decimal import Decimal

import pytest

from goldrl_dagster.lib.bingx.account import AccountUpdate, OrderUpdate, parse_account_event
from goldrl_dagster.lib.bingx.simulator.exchange import SimExchange, SimReject
from goldrl_dagster.lib.bingx.simulator.feeds import SimulatedFeeds
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS, SimulatedMarket

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
START = GENESIS_MS + 40 * DAY_MS + 30_500
TAKER, MAKER = Decimal("0.0005"), Decimal("0.0002")


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@pytest.fixture(scope="module")
def market_and_feeds():
    market = SimulatedMarket(7)
    return market, SimulatedFeeds(market)


@pytest.fixture
def venue(market_and_feeds):
    market, feeds = market_and_feeds
    clock = Clock(START)
    exchange = SimExchange(market, feeds, clock)
    account = exchange.create_account("key", "secret", hedge_mode=False, balance="100000")
    events: list[dict] = []
    exchange.add_listener(account, events.append)
    return exchange, account, clock, events


def order(side, quantity, symbol=XAUT, n=[0], **extra):  # noqa: B006 - a counter for client ids
    n[0] += 1
    params = {"symbol": symbol, "side": side, "type": "MARKET", "quantity": quantity}
    params["clientOrderId"] = f"c{n[0]}"
    params.update(extra)
    return params


def limit(side, quantity, price, tif="GTC", **extra):
    return order(side, quantity, type="LIMIT", price=price, timeInForce=tif, **extra)


def book(exchange, now):
    return exchange.book(XAUT, now)


def test_a_large_market_order_walks_the_book(venue):
    exchange, account, clock, _ = venue
    _, asks = book(exchange, clock.now)
    part = (asks[3][1] / 2).quantize(Decimal("0.0001"))
    size = sum(q for _, q in asks[:3]) + part  # three levels and half the fourth
    placed = exchange.place(account, order("BUY", str(size)))
    assert placed.status == "FILLED" and placed.executed == size
    assert [f.price for f in placed.fills] == [p for p, _ in asks[:4]]
    assert placed.fills[-1].quantity == part
    cost = sum(f.price * f.quantity for f in placed.fills)
    fees = sum((f.price * f.quantity * TAKER).quantize(Decimal("1e-8")) for f in placed.fills)
    assert placed.cum_quote == cost and -placed.commission == fees
    assert account.balance == Decimal(100000) - fees
    position = account.positions[(XAUT, "BOTH")]
    assert position.quantity == size and position.entry_price == cost / size


def test_the_same_orders_at_the_same_times_fill_identically(market_and_feeds):
    market, feeds = market_and_feeds
    runs = []
    for _ in range(2):
        exchange = SimExchange(market, feeds, Clock(START))
        account = exchange.create_account("k", "s", hedge_mode=False, balance="100000")
        placed = exchange.place(account, order("SELL", "3.5"))
        runs.append([(f.price, f.quantity, f.commission) for f in placed.fills])
    assert runs[0] == runs[1] and len(runs[0]) > 1


def test_a_gtc_limit_fills_what_crosses_then_rests_and_fills_from_the_tape(venue):
    exchange, account, clock, _ = venue
    _, asks = book(exchange, clock.now)
    price = asks[1][0]  # crosses the two best levels only
    wanted = asks[0][1] + asks[1][1] + Decimal("2")
    placed = exchange.place(account, limit("BUY", str(wanted), str(price)))
    assert placed.status == "PARTIALLY_FILLED"
    assert placed.executed == asks[0][1] + asks[1][1]
    assert all(not f.maker for f in placed.fills)
    # Time passes: trades printed at or below the limit fill the rest at the limit price.
    for _ in range(120):
        clock.now += 60_000
        exchange.advance()
        if not placed.is_open:
            break
    maker_fills = [f for f in placed.fills if f.maker]
    assert placed.status == "FILLED" and placed.executed == wanted
    assert maker_fills and all(f.price == price for f in maker_fills)
    assert len(maker_fills) > 1  # the tape's trades are smaller than the order: partial fills
    for fill in maker_fills:
        assert -fill.commission == (fill.price * fill.quantity * MAKER).quantize(Decimal("1e-8"))


def test_ioc_expires_its_remainder_and_fok_fills_all_or_nothing(venue):
    exchange, account, clock, _ = venue
    _, asks = book(exchange, clock.now)
    best, size = asks[0]
    ioc = exchange.place(account, limit("BUY", str(size + 1), str(best), tif="IOC"))
    assert ioc.status == "EXPIRED" and ioc.executed == size
    fok = exchange.place(account, limit("BUY", str(size + 1), str(best), tif="FOK"))
    assert fok.status == "EXPIRED" and fok.executed == 0 and fok.fills == []
    clock.now += 1000
    _, asks = book(exchange, clock.now)
    fok = exchange.place(account, limit("BUY", str(asks[0][1]), str(asks[0][0]), tif="FOK"))
    assert fok.status == "FILLED"


def test_post_only_never_takes(venue):
    exchange, account, clock, _ = venue
    bids, asks = book(exchange, clock.now)
    taking = exchange.place(account, limit("BUY", "0.5", str(asks[0][0]), tif="PostOnly"))
    assert taking.status == "EXPIRED" and taking.fills == []
    resting = exchange.place(account, limit("BUY", "0.5", str(bids[0][0]), tif="PostOnly"))
    assert resting.status == "NEW"


def test_reduce_only_is_capped_and_refused_without_a_position(venue):
    exchange, account, _, _ = venue
    with pytest.raises(SimReject) as caught:
        exchange.place(account, order("SELL", "1", reduceOnly="true"))
    assert caught.value.code == 101205
    exchange.place(account, order("BUY", "1"))
    closing = exchange.place(account, order("SELL", "3", reduceOnly="true"))
    assert closing.executed == 1 and closing.quantity == 1
    assert account.positions[(XAUT, "BOTH")].quantity == 0


def test_flipping_through_zero_realises_the_closed_part(venue):
    exchange, account, _, _ = venue
    bought = exchange.place(account, order("BUY", "1"))
    entry = bought.cum_quote / bought.executed
    sold = exchange.place(account, order("SELL", "3"))
    position = account.positions[(XAUT, "BOTH")]
    assert position.quantity == -2
    expected, to_close = Decimal(0), Decimal(1)
    for fill in sold.fills:  # the first unit sold closes the long; the rest opens the short
        closing = min(fill.quantity, to_close)
        expected += (fill.price - entry) * closing
        to_close -= closing
    assert sold.realised == expected
    assert position.entry_price != entry  # the short has its own entry


def test_margin_limits_the_exposure_an_order_adds(venue):
    exchange, account, clock, _ = venue
    _, asks = book(exchange, clock.now)
    leverage = 5
    affordable = (account.balance * leverage / asks[0][0] / 2).quantize(Decimal("0.0001"))
    exchange.place(account, limit("BUY", str(affordable), "100.00"))  # margin held by the order
    exchange.place(account, order("BUY", str(affordable)))
    with pytest.raises(SimReject) as caught:
        exchange.place(account, order("BUY", str(affordable)))
    assert caught.value.code == 80012 and "margin is not enough" in caught.value.msg
    # Reducing exposure needs no margin.
    exchange.place(account, order("SELL", str(affordable)))


def test_minimums_and_precision_are_enforced(venue):
    exchange, account, _, _ = venue
    for params, code in (
        (order("BUY", "0.0001"), 101400),
        (order("BUY", "0.0005"), 110425),
        (order("BUY", "0.00051"), 109400),
        (limit("BUY", "1", "2500.001"), 109400),
        (order("BUY", "1", symbol="BTC-USDT"), 109425),
        (order("HOLD", "1"), 109400),
    ):
        with pytest.raises(SimReject) as caught:
            exchange.place(account, params)
        assert caught.value.code == code, params


def test_funding_settles_on_open_positions_at_the_funding_time(market_and_feeds):
    market, feeds = market_and_feeds
    funding_time = feeds.funding_times(PAXG, START, START + DAY_MS)[0]
    clock = Clock(funding_time - 5_000)
    exchange = SimExchange(market, feeds, clock)
    long = exchange.create_account("long", "s", hedge_mode=False, balance="100000")
    short = exchange.create_account("short", "s", hedge_mode=False, balance="100000")
    exchange.place(long, order("BUY", "2", symbol=PAXG))
    exchange.place(short, order("SELL", "2", symbol=PAXG))
    before = long.balance, short.balance
    clock.now = funding_time + 1
    exchange.advance()
    rate = Decimal(f"{feeds.funding_rate(PAXG, funding_time):.6f}")
    mark = exchange.mark_price(PAXG, funding_time)
    assert long.balance == before[0] - 2 * mark * rate
    assert short.balance == before[1] + 2 * mark * rate
    [income] = [row for row in long.income if row["incomeType"] == "FUNDING_FEE"]
    assert income["time"] == funding_time and Decimal(income["income"]) == -2 * mark * rate
    exchange.advance()  # settling again changes nothing
    assert long.balance == before[0] - 2 * mark * rate


def test_hedge_mode_needs_a_position_side_and_a_position_to_close(market_and_feeds):
    market, feeds = market_and_feeds
    exchange = SimExchange(market, feeds, Clock(START))
    account = exchange.create_account("hedge", "s", balance="100000")
    assert account.dual_side  # BingX's default
    with pytest.raises(SimReject, match="LONG or SHORT"):
        exchange.place(account, order("BUY", "1"))
    exchange.place(account, order("BUY", "1", positionSide="LONG"))
    with pytest.raises(SimReject) as caught:
        exchange.place(account, order("SELL", "2", positionSide="LONG"))
    assert caught.value.code == 101205
    exchange.place(account, order("SELL", "1", positionSide="SHORT"))
    assert account.positions[(XAUT, "LONG")].quantity == 1
    assert account.positions[(XAUT, "SHORT")].quantity == -1


def test_every_change_is_an_account_stream_event_in_bingx_shape(venue):
    exchange, account, _, events = venue
    placed = exchange.place(account, order("BUY", "0.5"))
    parsed = [parse_account_event(e) for e in events]
    updates = [e for e in parsed if isinstance(e, OrderUpdate)]
    assert [(u.execution_type, u.order.status) for u in updates] == [
        ("NEW", "NEW"),
        ("TRADE", "FILLED"),
    ]
    assert updates[-1].order.order_id == placed.order_id
    assert updates[-1].order.executed_qty == Decimal("0.5")
    [account_update] = [e for e in parsed if isinstance(e, AccountUpdate)]
    assert account_update.reason == "ORDER"
    assert account_update.balances[0].balance == account.balance
    assert account_update.positions[0].quantity == Decimal("0.5")
