"""Parsers of the feed, trade and order records: every documented shape, clear errors."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from goldrl_dagster.lib.bingx.models import (
    parse_depth,
    parse_funding_rate,
    parse_open_interest,
    parse_premium_index,
    parse_ticker_24h,
    parse_trade_push,
    parse_trade_row,
    trade_key,
)
from goldrl_dagster.lib.bingx.orders import parse_order

BIG_ID = "1736012345678901234"  # 19 digits, > 2**53


def test_funding_rate_strings_and_symbol_fallback():
    rate = parse_funding_rate({"fundingRate": "-0.000125", "fundingTime": "1735718400000"}, "X")
    assert (rate.symbol, rate.funding_time_ms, rate.funding_rate) == ("X", 1735718400000, -0.000125)
    with pytest.raises(ValueError, match="fundingTime"):
        parse_funding_rate({"symbol": "X", "fundingRate": "0.0001"})


def test_premium_index_interval_is_optional_and_never_assumed():
    row = {"symbol": "PAXG-USDT", "markPrice": "2650.5", "indexPrice": "2650.1",
           "lastFundingRate": "0.0001", "nextFundingTime": 1735718400000}  # fmt: skip
    index = parse_premium_index(row, received_ms=123)
    assert index.funding_interval_hours is None and index.time_ms == 123
    assert parse_premium_index({**row, "fundingIntervalHours": "4"}, 0).funding_interval_hours == 4
    with pytest.raises(ValueError, match="fundingIntervalHours"):
        parse_premium_index({**row, "fundingIntervalHours": 0}, 0)


def test_open_interest_and_ticker():
    oi = parse_open_interest({"openInterest": "1234.5", "symbol": "XAUT-USDT", "time": 5}, 9)
    assert (oi.time_ms, oi.open_interest) == (5, 1234.5)
    row = {"symbol": "XAUT-USDT", "lastPrice": "2651", "openPrice": "2600", "highPrice": "2660",
           "lowPrice": "2590", "volume": "10", "quoteVolume": "26000", "priceChangePercent": "1.96",
           "closeTime": 77}  # fmt: skip
    ticker = parse_ticker_24h(row)
    assert ticker.time_ms == 77 and ticker.bid_price is None and ticker.price_change_percent == 1.96
    assert parse_ticker_24h({**row, "bidPrice": "2650.9", "bidQty": "3"}).bid_qty == 3.0


@pytest.mark.parametrize(
    ("sent", "percent"), [("0.31%", 0.31), ("-1.2%", -1.2), ("0.31", 0.31), (-1.2, -1.2)]
)
def test_ticker_price_change_percent_with_or_without_the_percent_sign(sent, percent):
    # Recorded from BingX: {"symbol": "XAUT-USDT", "priceChange": "10.30",
    # "priceChangePercent": "0.31%", "lastPrice": "3345.10", "lastQty": "0.12", …}
    row = {"symbol": "XAUT-USDT", "priceChange": "10.30", "priceChangePercent": sent,
           "lastPrice": "3345.10", "lastQty": "0.12", "highPrice": "3350.00",
           "lowPrice": "3320.50", "volume": "812.34", "quoteVolume": "2712345.67",
           "openPrice": "3334.80", "openTime": "1735632000000",
           "closeTime": "1735718400000"}  # fmt: skip
    ticker = parse_ticker_24h(row)
    assert ticker.price_change_percent == percent and ticker.time_ms == 1735718400000


@pytest.mark.parametrize("sent", ["abc%", "%", "", None, "0.31%%", {"v": 1}])
def test_malformed_price_change_percent_names_the_field(sent):
    row = {"symbol": "XAUT-USDT", "lastPrice": "1", "openPrice": "1", "highPrice": "1",
           "lowPrice": "1", "volume": "1", "quoteVolume": "1", "priceChangePercent": sent,
           "closeTime": 77}  # fmt: skip
    with pytest.raises(ValueError, match="priceChangePercent") as caught:
        parse_ticker_24h(row)
    assert "XAUT-USDT" in str(caught.value)  # the record is shown


def test_depth_is_best_first_whatever_the_wire_order():
    data = {"T": 10, "bids": [["99", "1"], ["100", "2"]], "asks": [["102", "1"], ["101", "5"]]}
    book = parse_depth(data, "XAUT-USDT", 0)
    assert book.bids == ((100.0, 2.0), (99.0, 1.0)) and book.asks == ((101.0, 5.0), (102.0, 1.0))
    with pytest.raises(ValueError, match="crossed book"):
        parse_depth({"bids": [["101", "1"]], "asks": [["100", "1"]]}, "X", 0)
    with pytest.raises(ValueError, match="price, quantity"):
        parse_depth({"bids": [["101"]], "asks": []}, "X", 0)


def test_trade_rows_and_pushes_share_content_keys():
    row = parse_trade_row(
        {"time": 1000, "isBuyerMaker": "true", "price": "2650.10", "qty": "0.5", "quoteQty": "1"},
        "XAUT-USDT",
    )
    (push,) = parse_trade_push(
        {"dataType": "XAUT-USDT@trade",
         "data": [{"p": "2650.1", "q": "0.50", "T": 1000, "m": True, "s": "XAUT-USDT"}]}
    )  # fmt: skip
    assert row == push  # the same trade from REST and from the stream
    assert row.trade_key == trade_key("XAUT-USDT", 1000, 2650.1, 0.5, True)
    other_side = trade_key("XAUT-USDT", 1000, 2650.1, 0.5, False)
    later = trade_key("XAUT-USDT", 1001, 2650.1, 0.5, True)
    assert len({row.trade_key, other_side, later}) == 3
    with pytest.raises(ValueError, match="not a list"):
        parse_trade_push({"data": "x"})
    with pytest.raises(ValueError, match="'m'"):
        parse_trade_push({"data": [{"p": "1", "q": "1", "T": 1, "s": "X"}]})


def test_rest_fill_ids_key_distinct_fills_apart_and_stay_exact():
    # Recorded REST rows: two fills with the same time, price, size and side, told apart only
    # by fillId.
    row = {"time": 1000, "isBuyerMaker": False, "price": "2650.10", "qty": "0.5",
           "quoteQty": "1325.05"}  # fmt: skip
    a = parse_trade_row({**row, "fillId": "1736012345678901234"}, "XAUT-USDT")
    b = parse_trade_row({**row, "fillId": "1736012345678901235"}, "XAUT-USDT")
    assert (a.fill_id, b.fill_id) == ("1736012345678901234", "1736012345678901235")
    assert a.trade_key != b.trade_key and a.content_key == b.content_key
    assert a.trade_key == trade_key("XAUT-USDT", 1000, 2650.1, 0.5, False, "1736012345678901234")
    (push,) = parse_trade_push(
        {"data": [{"p": "2650.1", "q": "0.5", "T": 1000, "m": False, "s": "XAUT-USDT"}]}
    )
    assert push.fill_id is None and push.trade_key == push.content_key == a.content_key
    big = json.loads('{"time": 1000, "isBuyerMaker": false, "price": "1", "qty": "1",'
                     ' "fillId": 1736012345678901234}')  # fmt: skip
    assert parse_trade_row(big, "X").fill_id == "1736012345678901234"  # a JSON int, kept whole
    for bad in (1.736e18, True, ["1"], "  "):
        with pytest.raises(ValueError, match="'fillId'"):
            parse_trade_row({**row, "fillId": bad}, "X")


def test_trade_push_with_bad_items_keeps_the_good_ones_when_errors_are_collected():
    good = {"p": "2650.1", "q": "0.50", "T": 1000, "m": True, "s": "XAUT-USDT"}
    message = {"dataType": "XAUT-USDT@trade", "data": [good, {**good, "p": None},
                                                       {**good, "T": 1001}]}  # fmt: skip
    with pytest.raises(ValueError, match="'p'"):
        parse_trade_push(message)
    errors: list[ValueError] = []
    trades = parse_trade_push(message, errors=errors)
    assert [t.time_ms for t in trades] == [1000, 1001]
    assert len(errors) == 1 and "'p'" in str(errors[0])
    errors.clear()
    assert parse_trade_push({"data": "x"}, errors=errors) == [] and len(errors) == 1


def test_order_nested_and_flat_shapes_with_exact_ids():
    nested = json.loads(
        '{"order": {"orderId": ' + BIG_ID + ', "symbol": "XAUT-USDT", "side": "BUY",'
        ' "type": "LIMIT", "origQty": "0.01", "price": "2600", "clientOrderID": "abc"}}'
    )
    flat = {"orderID": BIG_ID, "symbol": "XAUT-USDT", "side": "sell", "type": "MARKET",
            "clientOrderId": "abc", "status": "FILLED", "executedQty": "0.01"}  # fmt: skip
    a, b = parse_order(nested), parse_order(flat)
    assert a.order_id == b.order_id == BIG_ID
    assert a.client_order_id == b.client_order_id == "abc"
    assert (a.side, a.type, a.quantity, a.price) == ("BUY", "LIMIT", Decimal("0.01"), 2600)
    assert (b.side, b.status, b.executed_qty) == ("SELL", "FILLED", Decimal("0.01"))
    with pytest.raises(ValueError, match="float"):
        parse_order({"orderId": float(BIG_ID), "symbol": "X", "side": "BUY", "type": "MARKET"})
    with pytest.raises(ValueError, match="orderId"):
        parse_order({"symbol": "X", "side": "BUY", "type": "MARKET"})
