"""The signed trading client against the simulator exchange, over real sockets."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import httpx
import pytest

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.errors import (
    AuthenticationError,
    BannedError,
    BelowMinimumError,
    ClockSkewError,
    DuplicateClientOrderIdError,
    InsufficientMarginError,
    InvalidOrderError,
    NotSentError,
    OrderNotFoundError,
    PositionModeError,
    RateLimitedError,
    RejectedError,
    UnknownOutcomeError,
    UnknownSymbolError,
)
from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.bingx.ratelimit import DEFAULT_LIMITS, LocalRateBudget
from goldrl_dagster.lib.bingx.signing import signed_query
from goldrl_dagster.lib.bingx.simulator.feeds import SimulatedFeeds
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS, SimulatedMarket
from goldrl_dagster.lib.bingx.trading import BingXTradingClient

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
ids = (f"t{n}" for n in itertools.count())


def market(side: str, quantity: str, symbol: str = XAUT, **kwargs) -> OrderRequest:
    return OrderRequest(symbol, side, Decimal(quantity), next(ids), **kwargs)


def far_limit(side: str, quantity: str = "0.05") -> OrderRequest:
    price = Decimal("100.00") if side == "BUY" else Decimal("99999.00")
    return OrderRequest(XAUT, side, Decimal(quantity), next(ids), type="LIMIT", price=price)


def test_a_hedge_mode_account_is_refused_before_any_order_is_sent(exchange_sim, make_trader):
    trader = make_trader(hedge_mode=True)
    with pytest.raises(PositionModeError, match="hedge mode") as caught:
        trader.client.place_order(market("BUY", "0.01"))
    assert "one-way" in str(caught.value)
    assert exchange_sim.exchange.account(trader.api_key).orders == {}
    assert trader.client.set_position_mode(hedge=False) is False
    assert trader.client.position_mode_is_hedge() is False
    trader.client.place_order(market("BUY", "0.01"))
    assert len(exchange_sim.exchange.account(trader.api_key).orders) == 1


def test_market_order_round_trip(exchange_sim, make_trader):
    client = make_trader().client
    request = OrderRequest(XAUT, "BUY", Decimal("0.5"), "GoldRL-Market-1")
    placed = client.place_order(request)
    assert len(placed.order_id) == 19 and int(placed.order_id) > 2**53
    assert placed.client_order_id == "goldrl-market-1"  # BingX lower-cases client ids
    assert placed.status is None  # BingX's placement answer carries no status: query it

    by_id = client.query_order(XAUT, order_id=placed.order_id)
    by_client = client.query_order(XAUT, client_order_id="GOLDRL-MARKET-1")
    assert by_id == by_client
    assert by_id.status == "FILLED" and by_id.is_terminal
    assert by_id.executed_qty == Decimal("0.5") and by_id.reduce_only is False

    now = exchange_sim.clock.now_ms()
    fills = client.fills(XAUT, now - 60_000, now + 1_000)
    assert {f.order_id for f in fills} == {placed.order_id}
    assert sum(f.quantity for f in fills) == Decimal("0.5")
    notional = sum(f.price * f.quantity for f in fills)
    assert by_id.avg_price == pytest.approx(notional / Decimal("0.5"), abs=Decimal("0.0001"))
    fees = -sum(f.commission for f in fills)
    assert fees == pytest.approx(notional * Decimal("0.0005"), abs=Decimal("1e-6"))

    [position] = client.positions(XAUT)
    assert position.quantity == Decimal("0.5") and position.entry_price == by_id.avg_price
    [balance] = client.balance()
    assert balance.asset == "USDT"
    assert balance.balance == pytest.approx(Decimal(10000) - fees, abs=Decimal("1e-6"))
    assert [o.order_id for o in client.order_history(XAUT)] == [placed.order_id]

    closed = client.place_order(market("SELL", "0.8", reduce_only=True))  # capped at 0.5
    assert client.query_order(XAUT, order_id=closed.order_id).executed_qty == Decimal("0.5")
    assert client.positions(XAUT) == []


def test_a_short_position_is_signed(make_trader):
    client = make_trader().client
    client.place_order(market("SELL", "0.25", symbol=PAXG))
    [position] = client.positions(PAXG)
    assert position.quantity == Decimal("-0.25")


def test_resting_orders_are_listed_cancelled_and_not_found_twice(make_trader):
    client = make_trader().client
    resting = [client.place_order(far_limit(side)) for side in ("BUY", "SELL", "BUY")]
    open_ids = {o.order_id for o in client.open_orders(XAUT)}
    assert open_ids == {o.order_id for o in resting}
    assert all(o.status == "NEW" and o.time_in_force == "GTC" for o in client.open_orders())

    cancelled = client.cancel_order(XAUT, order_id=resting[0].order_id)
    assert cancelled.status == "CANCELED"  # BingX's "CANCELLED" is read as one spelling
    with pytest.raises(OrderNotFoundError, match="may have been filled"):
        client.cancel_order(XAUT, order_id=resting[0].order_id)
    rest = client.cancel_all_orders(XAUT)
    assert {o.order_id for o in rest} == {resting[1].order_id, resting[2].order_id}
    assert client.open_orders(XAUT) == []
    with pytest.raises(OrderNotFoundError):
        client.query_order(XAUT, client_order_id="never-placed")


def test_cancel_after_a_late_fill_says_the_order_may_be_filled(exchange_sim, make_trader):
    client = make_trader().client
    order = client.place_order(far_limit("BUY"))
    exchange_sim.fill_before_next_cancels(1)
    with pytest.raises(OrderNotFoundError, match="filled") as caught:
        client.cancel_order(XAUT, client_order_id=order.client_order_id)
    assert not isinstance(caught.value, RejectedError | UnknownOutcomeError)
    assert client.query_order(XAUT, order_id=order.order_id).status == "FILLED"


@pytest.mark.parametrize(
    ("request_", "error", "code"),
    [
        (lambda: market("BUY", "1000"), InsufficientMarginError, 80012),
        (lambda: market("BUY", "0.0001"), BelowMinimumError, 101400),
        (lambda: market("BUY", "0.0005"), BelowMinimumError, 110425),
        (lambda: market("SELL", "0.01", reduce_only=True), InvalidOrderError, 101205),
        (lambda: market("BUY", "0.00001"), InvalidOrderError, 109400),
    ],
    ids=["margin", "min-quantity", "min-notional", "nothing-to-reduce", "precision"],
)
def test_definitive_refusals_are_rejections(exchange_sim, make_trader, request_, error, code):
    trader = make_trader()
    with pytest.raises(error) as caught:
        trader.client.place_order(request_())
    assert caught.value.code == code
    assert isinstance(caught.value, RejectedError)
    assert exchange_sim.exchange.account(trader.api_key).orders == {}


def test_a_duplicate_client_order_id_is_refused_and_names_itself(make_trader):
    client = make_trader().client
    client.place_order(OrderRequest(XAUT, "BUY", Decimal("0.01"), "same-id"))
    with pytest.raises(DuplicateClientOrderIdError):
        client.place_order(OrderRequest(XAUT, "BUY", Decimal("0.01"), "SAME-ID"))
    assert len(client.order_history(XAUT)) == 1


def test_unknown_symbols_and_bad_requests_fail_before_sending(make_trader):
    client = make_trader().client
    with pytest.raises(UnknownSymbolError):
        client.place_order(market("BUY", "0.01", symbol="BTC-USDT"))
    with pytest.raises(ValueError, match="exactly one"):
        client.query_order(XAUT)
    with pytest.raises(ValueError, match="client order id"):
        OrderRequest(XAUT, "BUY", Decimal("1"), "has space")
    for quantity in ("0", "-1", "inf", "nan", "1e20"):
        with pytest.raises(ValueError, match="quantity"):
            OrderRequest(XAUT, "BUY", quantity, "q")


def test_bad_credentials_are_authentication_rejections(exchange_sim, make_trader, order_budget):
    trader = make_trader()
    wrong_secret = BingXTradingClient(
        exchange_sim.base_url, Credentials(trader.api_key, "0" * 64), rate_budget=order_budget
    )
    unknown_key = BingXTradingClient(
        exchange_sim.base_url, Credentials("nobody", trader.secret), rate_budget=order_budget
    )
    with pytest.raises(AuthenticationError) as bad_signature:
        wrong_secret.balance()
    with pytest.raises(AuthenticationError) as bad_key:
        unknown_key.balance()
    assert (bad_signature.value.code, bad_key.value.code) == (100001, 100413)


def test_a_lost_answer_is_an_unknown_outcome_that_reconciles(exchange_sim, make_trader):
    client = make_trader(timeout=0.5).client
    exchange_sim.lose_next_order_responses(1, seconds=2.0)
    request = market("BUY", "0.01")
    with pytest.raises(UnknownOutcomeError) as caught:
        client.place_order(request)
    assert not isinstance(caught.value, RejectedError)
    assert caught.value.client_order_id == request.client_order_id
    # The order was carried out: reconciliation by client id finds it.
    found = client.query_order(XAUT, client_order_id=caught.value.client_order_id)
    assert found.status == "FILLED"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_unknown_outcomes_for_writes_and_retried_for_reads(
    exchange_sim, make_trader, status
):
    client = make_trader().client
    exchange_sim.inject_rest_faults(status)
    with pytest.raises(UnknownOutcomeError) as caught:
        client.place_order(market("BUY", "0.01"))
    assert caught.value.code == status
    exchange_sim.inject_rest_faults(status, status)
    assert client.open_orders() == []  # a read: retried through the burst


def test_rate_limit_answers_and_bans_are_unknown_outcomes(exchange_sim, make_trader):
    client = make_trader().client
    for reply in ("http", "code"):
        exchange_sim.inject_rate_limit_burst(1, reply=reply)
        with pytest.raises(RateLimitedError) as caught:
            client.place_order(market("BUY", "0.01"))
        assert isinstance(caught.value, UnknownOutcomeError)
    exchange_sim.ban_ip(0.5)
    with pytest.raises(BannedError):
        client.balance()  # a ban is not retried
    time.sleep(0.6)
    assert client.balance()[0].asset == "USDT"


def test_no_connection_means_nothing_was_sent(start_sim):
    server = start_sim()
    server.create_account("gone-key", "gone-secret", hedge_mode=False)
    client = BingXTradingClient(
        server.base_url, Credentials("gone-key", "gone-secret"), rate_budget=None, read_retries=0
    )
    client.sync_clock()
    client.require_one_way_mode()
    server.stop()
    with pytest.raises(NotSentError, match="nothing was sent") as caught:
        client.place_order(market("BUY", "0.01"))
    assert isinstance(caught.value, RejectedError)
    fresh = BingXTradingClient(
        server.base_url, Credentials("k", "s"), rate_budget=None, read_retries=0
    )
    with pytest.raises(NotSentError, match="clock could not be measured"):
        fresh.balance()


def test_a_clock_step_is_healed_by_measuring_again(exchange_sim, make_trader):
    shift = [0.0]
    trader = make_trader(local_ms=lambda: time.time() * 1000.0 + shift[0])
    trader.client.sync_clock()
    shift[0] = 90_000.0  # the local clock jumps 90 s ahead after the offset was measured
    assert trader.client.balance()[0].asset == "USDT"
    assert abs(trader.client.clock.sample.offset_ms + 90_000 - exchange_offset(exchange_sim)) < 500


def exchange_offset(sim) -> float:
    return sim.clock.now_ms() - time.time() * 1000.0


def test_an_erratic_clock_gives_a_clear_error(make_trader):
    jumps = itertools.count(step=100_000.0)
    trader = make_trader(hedge_mode=True, local_ms=lambda: time.time() * 1000.0 + next(jumps))
    with pytest.raises(ClockSkewError, match="check the system clock"):
        trader.client.balance()


def test_order_rate_limits_are_respected_by_the_limiter(exchange_sim, make_trader):
    client = make_trader(rate_budget=LocalRateBudget(DEFAULT_LIMITS)).client
    time.sleep(1.1)  # the other tests' orders leave the simulator's window
    refused = exchange_sim.rate_limit_stats()["refused"]
    started = time.monotonic()
    for _ in range(10):
        client.test_order(market("BUY", "0.01"))
    elapsed = time.monotonic() - started
    assert exchange_sim.rate_limit_stats()["refused"] == refused
    assert elapsed >= 2.9  # 10 orders at 3/s per IP: the limiter waited, the exchange never had to


def test_the_dry_run_places_nothing(exchange_sim, make_trader):
    trader = make_trader()
    checked = trader.client.test_order(market("BUY", "0.01"))
    assert checked.status == "NEW" and checked.quantity == Decimal("0.0100")
    assert exchange_sim.exchange.account(trader.api_key).orders == {}
    with pytest.raises(InsufficientMarginError):
        trader.client.test_order(market("BUY", "1000"))


def test_leverage_margin_type_and_fees(make_trader):
    client = make_trader().client
    leverage = client.leverage(XAUT)
    assert (leverage.long, leverage.short, leverage.max_long) == (5, 5, 50)
    assert client.set_leverage(XAUT, 10) == 10
    assert client.leverage(XAUT).long == 10 and client.leverage(XAUT).short == 10
    assert client.set_leverage(XAUT, 3, side="SHORT") == 3
    assert (client.leverage(XAUT).long, client.leverage(XAUT).short) == (10, 3)
    for bad in (2.5, 0, True, "5"):
        with pytest.raises(ValueError, match="integer"):
            client.set_leverage(XAUT, bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidOrderError, match="maximum"):
        client.set_leverage(XAUT, 51)
    assert client.margin_type(XAUT) == "CROSSED"
    client.set_margin_type(XAUT, "ISOLATED")
    assert client.margin_type(XAUT) == "ISOLATED"
    rates = client.commission_rate()
    assert (rates.taker, rates.maker) == (Decimal("0.0005"), Decimal("0.0002"))


def test_settings_cannot_change_under_an_open_position(make_trader):
    client = make_trader().client
    client.place_order(market("BUY", "0.01"))
    with pytest.raises(InvalidOrderError, match="open positions"):
        client.set_position_mode(hedge=True)
    with pytest.raises(InvalidOrderError, match="open positions"):
        client.set_margin_type(XAUT, "ISOLATED")


@pytest.mark.parametrize("shape", ["nested", "flat"])
def test_both_placement_answer_shapes_keep_ids_exact(start_sim, shape):
    server = start_sim(order_shape=shape)
    server.create_account("shape-key", "shape-secret", hedge_mode=False)
    with BingXTradingClient(
        server.base_url, Credentials("shape-key", "shape-secret"), rate_budget=None
    ) as client:
        a = client.place_order(OrderRequest(XAUT, "BUY", Decimal("0.01"), "GoldRL-1"))
        b = client.place_order(OrderRequest(XAUT, "BUY", Decimal("0.01"), "GoldRL-2"))
    assert len(a.order_id) == 19 and int(a.order_id) > 2**53
    assert int(b.order_id) - int(a.order_id) == 1  # a float would have merged them
    assert (a.client_order_id, a.symbol, a.side) == ("goldrl-1", XAUT, "BUY")


def test_unsigned_and_tampered_requests_are_refused_by_the_simulator(start_sim):
    server = start_sim(rate_limits=None)
    server.create_account("raw-key", "raw-secret")
    credentials = Credentials("raw-key", "raw-secret")
    url = f"{server.base_url}/openApi/swap/v3/user/balance"
    headers = {"X-BX-APIKEY": "raw-key"}
    assert httpx.get(url, headers=headers).json()["code"] == 100001
    good = signed_query({}, credentials, server.clock.now_ms())
    tampered = good.replace("recvWindow=5000", "recvWindow=6000")
    assert httpx.get(f"{url}?{good}", headers=headers).json()["code"] == 0
    assert httpx.get(f"{url}?{tampered}", headers=headers).json()["code"] == 100001
    stale = signed_query({}, credentials, server.clock.now_ms() - 60_000)
    answer = httpx.get(f"{url}?{stale}", headers=headers).json()
    assert answer["code"] == 109400 and "timestamp" in answer["msg"]


def test_funding_is_settled_and_reported_as_income(start_sim):
    feeds = SimulatedFeeds(SimulatedMarket(7))
    after = GENESIS_MS + 41 * DAY_MS
    funding_time = feeds.funding_times(PAXG, after, after + DAY_MS)[0]
    server = start_sim(anchor_ms=funding_time - 2_000, push_interval=0.05)
    server.create_account("funding-key", "funding-secret", hedge_mode=False)
    with BingXTradingClient(
        server.base_url, Credentials("funding-key", "funding-secret"), rate_budget=None
    ) as client:
        client.place_order(OrderRequest(PAXG, "BUY", Decimal("2"), "funded"))
        assert client.funding_income(PAXG) == []
        deadline = time.monotonic() + 10
        while not (income := client.funding_income(PAXG)) and time.monotonic() < deadline:
            time.sleep(0.2)
    [record] = income
    rate = Decimal(f"{feeds.funding_rate(PAXG, funding_time):.6f}")
    mark = server.exchange.mark_price(PAXG, funding_time)
    assert (record.symbol, record.income_type, record.asset) == (PAXG, "FUNDING_FEE", "USDT")
    assert record.time_ms == funding_time
    assert record.amount == pytest.approx(-2 * mark * rate, abs=Decimal("1e-8"))
