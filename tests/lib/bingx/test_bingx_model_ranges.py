"""Numbers and times out of range are ValueErrors naming the field, in every parser that reads
them (never an OverflowError or OSError escaping later, e.g. from datetime.fromtimestamp)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from goldrl_dagster.lib.bingx.models import (
    MAX_EPOCH_MS,
    parse_contract,
    parse_depth,
    parse_funding_rate,
    parse_kline_push,
    parse_kline_row,
    parse_open_interest,
    parse_premium_index,
    parse_ticker_24h,
    parse_trade_push,
    parse_trade_row,
)

T0 = 1735689600000
CONTRACT = {"symbol": "XAUT-USDT", "pricePrecision": "2", "quantityPrecision": "0",
            "tradeMinQuantity": "1", "tradeMinUSDT": "2", "feeRate": "0.0005",
            "launchTime": T0}  # fmt: skip
KLINE = {"open": "1", "close": "2", "high": "3", "low": "0.5", "volume": "4", "time": T0}
PUSH_ITEM = {"o": "1", "h": "1", "l": "1", "c": "1", "v": "1", "T": T0}
PREMIUM = {"symbol": "XAUT-USDT", "markPrice": "1", "indexPrice": "1", "lastFundingRate": "0",
           "nextFundingTime": T0, "time": T0}  # fmt: skip
TICKER = {"symbol": "XAUT-USDT", "lastPrice": "1", "openPrice": "1", "highPrice": "1",
          "lowPrice": "1", "volume": "1", "quoteVolume": "1", "priceChangePercent": "0.31%",
          "closeTime": T0}  # fmt: skip
TRADE = {"time": T0, "isBuyerMaker": True, "price": "1", "qty": "1"}
TRADE_ITEM = {"p": "1", "q": "1", "T": T0, "m": False, "s": "XAUT-USDT"}

# (parser applied to a record with `field` replaced, the field, the message's field name)
PARSERS = {
    "contract.launchTime": (lambda v: parse_contract({**CONTRACT, "launchTime": v}), "launchTime"),
    "kline.time": (lambda v: parse_kline_row({**KLINE, "time": v}), "time"),
    "kline.array": (lambda v: parse_kline_row([v, "1", "1", "1", "1", "1"]), "openTime"),
    "push.T": (lambda v: parse_kline_push({"data": [{**PUSH_ITEM, "T": v}]}), "data.T"),
    "push.K.t": (
        lambda v: parse_kline_push({"data": {"K": {**PUSH_ITEM, "t": v}}}),
        "data.K.t",
    ),
    "funding": (
        lambda v: parse_funding_rate({"fundingRate": "0", "fundingTime": v}, "X"),
        "fundingTime",
    ),
    "premium.next": (
        lambda v: parse_premium_index({**PREMIUM, "nextFundingTime": v}, T0),
        "nextFundingTime",
    ),
    "premium.time": (lambda v: parse_premium_index({**PREMIUM, "time": v}, T0), "time"),
    "open_interest": (
        lambda v: parse_open_interest({"symbol": "X", "openInterest": "1", "time": v}, T0),
        "time",
    ),
    "ticker": (lambda v: parse_ticker_24h({**TICKER, "closeTime": v}), "closeTime"),
    "depth": (lambda v: parse_depth({"T": v, "bids": [], "asks": []}, "X", T0), "T"),
    "trade_row": (lambda v: parse_trade_row({**TRADE, "time": v}, "X"), "time"),
    "trade_push": (lambda v: parse_trade_push({"data": [{**TRADE_ITEM, "T": v}]}), "T"),
}
# Recorded shapes: a JSON integer past a float's range, "1e400", 400 nines, a time in
# nanoseconds' magnitude, a negative time and one millisecond past 9999-12-31.
OUT_OF_RANGE = [10**400, "1e400", "9" * 400, 10**20, -1, str(MAX_EPOCH_MS + 1)]


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=lambda v: str(v)[:12])
@pytest.mark.parametrize("parser", list(PARSERS))
def test_out_of_range_times_are_value_errors_naming_the_field(parser, value):
    parse, field = PARSERS[parser]
    value = json.loads(json.dumps(value))  # as it arrives off the wire
    with pytest.raises(ValueError, match=f"'{field}'"):
        parse(value)


@pytest.mark.parametrize("parser", list(PARSERS))
def test_the_range_edges_are_accepted(parser):
    parse, _ = PARSERS[parser]
    parse(0)
    parse(str(MAX_EPOCH_MS))


def test_the_latest_time_accepted_converts_to_a_datetime():
    (kline,) = parse_kline_push({"data": [{**PUSH_ITEM, "T": MAX_EPOCH_MS}]})
    assert kline.open_time == datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    launch = parse_contract({**CONTRACT, "launchTime": str(MAX_EPOCH_MS)}).launch_time
    assert launch is not None and launch.year == 9999


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pricePrecision", 10**400),  # float(int) would overflow
        ("pricePrecision", 1e300),  # an integer, absurdly large
        ("quantityPrecision", 19),
        ("quantityPrecision", -1),
        ("tradeMinUSDT", 10**400),
        ("tradeMinQuantity", {"value": "1"}),  # an object where a number is expected
        ("symbol", ["XAUT-USDT"]),  # unhashable
        ("symbol", 42),
        ("symbol", " "),
    ],
)
def test_contract_fields_out_of_range_or_of_the_wrong_type(field, value):
    with pytest.raises(ValueError, match=f"'{field}'") as caught:
        parse_contract({**CONTRACT, field: value})
    assert " in {'symbol': " in str(caught.value)  # the record is shown
