"""Strict parsing of BingX trading records, on payloads shaped like the exchange's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from goldrl_dagster.lib.bingx.account import (
    AccountUpdate,
    ConfigUpdate,
    ListenKeyExpired,
    OrderUpdate,
    parse_account_event,
    parse_balance,
    parse_commission_rate,
    parse_dual_side,
    parse_income,
    parse_leverage,
    parse_position,
)
from goldrl_dagster.lib.bingx.orders import OrderRequest, parse_fill, parse_order

BIG_ID = "1711312357852147712"


def test_order_ids_stay_exact_in_both_spellings_and_shapes():
    nested = {"order": {"orderId": int(BIG_ID), "clientOrderID": "abc", "symbol": "XAUT-USDT",
                        "side": "buy", "type": "market"}}  # fmt: skip
    flat = {"orderID": BIG_ID, "clientOrderId": "abc", "symbol": "XAUT-USDT", "side": "BUY",
            "type": "MARKET"}  # fmt: skip
    a, b = parse_order(nested), parse_order(flat)
    assert a.order_id == b.order_id == BIG_ID
    assert (a.client_order_id, a.side, a.type) == ("abc", "BUY", "MARKET")
    with pytest.raises(ValueError, match="ids must stay exact"):
        parse_order({**flat, "orderID": float(BIG_ID)})
    with pytest.raises(ValueError, match="'orderId' is missing"):
        parse_order({"symbol": "X", "side": "BUY", "type": "MARKET"})


def test_query_answer_with_decimals_times_and_both_cancel_spellings():
    record = {
        "symbol": "XAUT-USDT", "orderId": BIG_ID, "side": "SELL", "positionSide": "BOTH",
        "type": "LIMIT", "origQty": "0.5000", "price": "2650.10", "executedQty": "0.2000",
        "avgPrice": "2650.1000", "cumQuote": "530.02", "commission": "-0.106004",
        "status": "CANCELLED", "time": 1739145630989, "updateTime": "1739145631000",
        "clientOrderId": "x1", "reduceOnly": "false", "timeInForce": "GTC",
    }  # fmt: skip
    order = parse_order({"order": record})
    assert order.status == "CANCELED" and order.is_terminal and not order.is_open
    assert order.executed_qty == Decimal("0.2") and order.commission == Decimal("-0.106004")
    assert order.update_time_ms == 1739145631000 and order.reduce_only is False
    for field, bad in (("origQty", "lots"), ("time", 10**20), ("reduceOnly", "maybe")):
        with pytest.raises(ValueError, match=field):
            parse_order({**record, field: bad})


def test_fills_read_bingx_utc_plus_8_times():
    row = {"volume": "0.1", "price": "106.75", "amount": "10.6750", "commission": "-0.0053",
           "currency": "USDT", "orderId": "1676213270274379776", "liquidatedPrice": "0.00",
           "liquidatedMarginRatio": "0.00",
           "filledTime": "2023-07-04T20:56:01.000+0800"}  # fmt: skip
    fill = parse_fill(row)
    assert fill.time_ms == 1688475361000  # 12:56:01 UTC
    assert (fill.quantity, fill.price, fill.commission) == (
        Decimal("0.1"), Decimal("106.75"), Decimal("-0.0053"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_fill({**row, "filledTime": "2023-07-04T20:56:01"})


@pytest.mark.parametrize(("side", "amount", "signed"), [
    ("LONG", "1.5", "1.5"), ("SHORT", "1.5", "-1.5"), ("BOTH", "-0.25", "-0.25"),
])  # fmt: skip
def test_positions_are_signed_by_their_side(side, amount, signed):
    row = {"symbol": "PAXG-USDT", "positionSide": side, "positionAmt": amount,
           "avgPrice": "2650.5", "leverage": 5, "isolated": True,
           "unrealizedProfit": "1.2"}  # fmt: skip
    position = parse_position(row)
    assert position.quantity == Decimal(signed) and position.isolated is True
    with pytest.raises(ValueError, match="leverage"):
        parse_position({**row, "leverage": "2.5"})


def test_balance_leverage_fees_income_and_mode():
    balance = parse_balance({"asset": "USDT", "balance": "100.5", "equity": "101",
                             "availableMargin": "90", "freezedMargin": "1"})  # fmt: skip
    assert (balance.balance, balance.frozen_margin) == (Decimal("100.5"), Decimal("1"))
    leverage = parse_leverage({"longLeverage": 5, "shortLeverage": "3"}, "XAUT-USDT")
    assert (leverage.symbol, leverage.long, leverage.short) == ("XAUT-USDT", 5, 3)
    with pytest.raises(ValueError, match="whole leverage"):
        parse_leverage({"longLeverage": 0, "shortLeverage": 3}, "XAUT-USDT")
    fees = parse_commission_rate({"commission": {"takerCommissionRate": 0.0005,
                                                 "makerCommissionRate": "0.0002"}})  # fmt: skip
    assert (fees.taker, fees.maker) == (Decimal("0.0005"), Decimal("0.0002"))
    with pytest.raises(ValueError, match="out of range"):
        parse_commission_rate({"commission": {"takerCommissionRate": 5, "makerCommissionRate": 0}})
    income = parse_income({"symbol": "LDO-USDT", "incomeType": "FUNDING_FEE", "income": "-0.0292",
                           "asset": "USDT", "info": "Funding Fee", "time": 1702713615000,
                           "tranId": "170***6*2_3*9_20***97"})  # fmt: skip
    assert income.amount == Decimal("-0.0292") and income.tran_id == "170***6*2_3*9_20***97"
    assert parse_dual_side({"dualSidePosition": "true"}) is True
    assert parse_dual_side({"dualSidePosition": False}) is False
    with pytest.raises(ValueError, match="dualSidePosition"):
        parse_dual_side({})


def test_account_stream_pushes_as_bingx_sends_them():
    order_push = {"e": "ORDER_TRADE_UPDATE", "E": 1696843635475, "o": {
        "s": "LTC-USDT", "c": "", "i": "1711312357852147712", "S": "BUY", "o": "MARKET",
        "q": "0.10000000", "p": "64.35010000", "ap": "64.36000000", "x": "TRADE", "X": "FILLED",
        "N": "USDT", "n": "-0.00321800", "T": 0, "wt": "MARK_PRICE", "ps": "LONG",
        "rp": "0.00000000", "z": "0.10000000"}}  # fmt: skip
    update = parse_account_event(order_push)
    assert isinstance(update, OrderUpdate)
    assert update.order.order_id == "1711312357852147712" and update.order.client_order_id is None
    assert update.order.status == "FILLED" and update.order.executed_qty == Decimal("0.1")
    assert update.order.update_time_ms is None  # BingX sends T=0 before a trade time exists
    account_push = {"e": "ACCOUNT_UPDATE", "E": 1696244249320, "a": {"m": "ORDER",
        "B": [{"a": "USDT", "wb": "49.81083984", "cw": "49.81083984", "bc": "-1.00000000"}],
        "P": [{"s": "LINK-USDT", "pa": "5.000", "ep": "11.2345", "up": "0.5000",
               "mt": "isolated", "iw": "50.00000000", "ps": "SHORT"}]}}  # fmt: skip
    account = parse_account_event(account_push)
    assert isinstance(account, AccountUpdate) and account.reason == "ORDER"
    assert account.balances[0].change == Decimal("-1")
    assert account.positions[0].quantity == Decimal("-5") and account.positions[0].isolated
    config_push = {"e": "ACCOUNT_CONFIG_UPDATE", "E": 1696244249320,
                   "ac": {"s": "XAUT-USDT", "l": 5, "S": 3, "mt": "cross"}}  # fmt: skip
    config = parse_account_event(config_push)
    assert isinstance(config, ConfigUpdate)
    assert (config.long_leverage, config.short_leverage) == (5, 3)
    expired = parse_account_event({"e": "listenKeyExpired", "E": 1696244249320, "listenKey": "k"})
    assert isinstance(expired, ListenKeyExpired) and "k" not in repr(expired)
    assert parse_account_event({"e": "SNAPSHOT", "E": 1}) is None
    for bad in ({"e": "ORDER_TRADE_UPDATE", "E": 1}, {"e": "ACCOUNT_UPDATE", "E": 1696244249320,
                "a": {"B": [{"a": "USDT"}]}}, []):  # fmt: skip
        with pytest.raises(ValueError):
            parse_account_event(bad)


def test_order_requests_render_bingx_parameters():
    request = OrderRequest("XAUT-USDT", "SELL", "0.50", "Mixed-Case_1", type="LIMIT",
                           price="2650.10", time_in_force="IOC", reduce_only=True,
                           stop_loss={"type": "STOP_MARKET", "stopPrice": 2700})  # fmt: skip
    params = request.params()
    assert params["clientOrderId"] == "mixed-case_1" and params["positionSide"] == "BOTH"
    assert params["quantity"] == Decimal("0.50") and params["reduceOnly"] is True
    assert params["stopLoss"] == '{"type":"STOP_MARKET","stopPrice":2700}'
    with pytest.raises(ValueError, match="LIMIT orders only"):
        OrderRequest("XAUT-USDT", "BUY", "1", "c", price="1")
    with pytest.raises(ValueError, match="needs a price"):
        OrderRequest("XAUT-USDT", "BUY", "1", "c", type="LIMIT")
    with pytest.raises(ValueError, match="time_in_force"):
        OrderRequest("XAUT-USDT", "BUY", "1", "c", type="LIMIT", price="1", time_in_force="GTD")
    with pytest.raises(ValueError, match="1-40"):
        OrderRequest("XAUT-USDT", "BUY", "1", "x" * 41)
