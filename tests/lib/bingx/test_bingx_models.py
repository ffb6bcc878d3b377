from datetime import UTC, datetime

import polars as pl
import pytest

from goldrl_dagster.lib.bingx.models import (
    Kline,
    klines_to_frame,
    parse_contract,
    parse_kline_push,
    parse_kline_row,
)
from goldrl_dagster.lib.market.candles import CANDLE_SCHEMA

EXPECTED = Kline(1735689600000, 2650.5, 2651.25, 2649.75, 2650.0, 12.3456)


def test_object_row_with_strings():
    row = {
        "open": "2650.5",
        "close": "2650.0",
        "high": "2651.25",
        "low": "2649.75",
        "volume": "12.3456",
        "time": 1735689600000,
    }
    assert parse_kline_row(row) == EXPECTED


def test_object_row_with_string_time_and_numbers():
    row = {
        "open": 2650.5,
        "close": 2650,
        "high": 2651.25,
        "low": 2649.75,
        "volume": 12.3456,
        "time": "1735689600000",
    }
    assert parse_kline_row(row) == EXPECTED


def test_array_row_shape():
    row = [
        1735689600000,
        "2650.5",
        "2651.25",
        "2649.75",
        "2650.0",
        "12.3456",
        1735689659999,
        "32745.1",
    ]
    assert parse_kline_row(row) == EXPECTED
    assert parse_kline_row(row).open_time == datetime(2025, 1, 1, tzinfo=UTC)


def test_mark_price_row_uses_open_time():
    row = {
        "open": "1",
        "close": "1",
        "high": "1",
        "low": "1",
        "volume": "0",
        "openTime": 60000,
        "closeTime": 119999,
    }
    assert parse_kline_row(row).open_time_ms == 60000


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"open": "1", "close": "1", "high": "1", "low": "1", "time": 0}, "'volume'"),
        (
            {"open": "1", "close": "1", "high": "abc", "low": "1", "volume": "1", "time": 0},
            "'high'",
        ),
        (
            {"open": "1", "close": "1", "high": "nan", "low": "1", "volume": "1", "time": 0},
            "'high'",
        ),
        (
            {"open": "1", "close": "1", "high": "1", "low": "1", "volume": "1", "time": "1.5"},
            "'time'",
        ),
        ({"open": None, "close": "1", "high": "1", "low": "1", "volume": "1", "time": 0}, "'open'"),
        ([0, "1", "1", "1"], "expected at least 6"),
        ("0,1,1,1,1,1", "object or an array"),
    ],
)
def test_malformed_rows_name_the_field_and_show_the_row(row, field):
    with pytest.raises(ValueError, match=field) as info:
        parse_kline_row(row)
    if isinstance(row, dict):
        assert "'close': '1'" in str(info.value)  # the offending row is shown


def test_push_list_shape_T_is_open_time():
    message = {
        "code": 0,
        "dataType": "XAUT-USDT@kline_1m",
        "s": "XAUT-USDT",
        "data": [
            {
                "c": "2650.0",
                "o": "2650.5",
                "h": "2651.25",
                "l": "2649.75",
                "v": "12.3456",
                "T": 1735689600000,
            }
        ],
    }
    assert parse_kline_push(message) == [EXPECTED]


def test_push_list_shape_with_t_and_T_takes_t_as_open_time():
    # Recorded list-shape push carrying both times: t = open, T = close (open + 59 999 ms).
    item = {"t": 1735689600000, "T": 1735689659999, "o": "2650.5", "h": "2651.25",
            "l": "2649.75", "c": "2650.0", "v": "12.3456"}  # fmt: skip
    message = {"code": 0, "dataType": "XAUT-USDT@kline_1m", "s": "XAUT-USDT", "data": [item]}
    assert parse_kline_push(message) == [EXPECTED]
    assert parse_kline_push({**message, "data": item}) == [EXPECTED]  # data as one object
    with pytest.raises(ValueError, match=r"'data\.t'"):
        parse_kline_push({**message, "data": [{**item, "t": None}]})  # no fallback to T


def test_push_nested_K_shape_uses_t():
    message = {
        "dataType": "XAUT-USDT@kline_1m",
        "data": {
            "K": {
                "t": 1735689600000,
                "T": 1735689659999,
                "o": "2650.5",
                "h": "2651.25",
                "l": "2649.75",
                "c": "2650.0",
                "v": "12.3456",
            }
        },
    }
    assert parse_kline_push(message) == [EXPECTED]


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({"code": 0}, "'data'"),
        ({"data": [{"o": "1", "h": "1", "l": "1", "c": "1", "v": "1"}]}, "'data.T'"),
        ({"data": {"K": {"T": 1, "o": "1", "h": "1", "l": "1", "c": "1", "v": "1"}}}, "'data.K.t'"),
        ({"data": [{"o": "x", "h": "1", "l": "1", "c": "1", "v": "1", "T": 0}]}, "'open'"),
        ({"data": "nope"}, "'data'"),
    ],
)
def test_malformed_pushes(message, match):
    with pytest.raises(ValueError, match=match):
        parse_kline_push(message)


def test_push_with_a_good_and_a_bad_item_keeps_the_good_one_when_errors_are_collected():
    good = {"o": "2650.5", "h": "2651.25", "l": "2649.75", "c": "2650.0", "v": "12.3456",
            "T": 1735689600000}  # fmt: skip
    message = {"code": 0, "dataType": "XAUT-USDT@kline_1m", "data": [good, {**good, "o": None}]}
    with pytest.raises(ValueError, match="'open'"):
        parse_kline_push(message)  # strict by default
    errors: list[ValueError] = []
    assert parse_kline_push(message, errors=errors) == [EXPECTED]
    assert len(errors) == 1 and "'open'" in str(errors[0])
    errors.clear()
    assert parse_kline_push({"data": [good, "junk", 7]}, errors=errors) == [EXPECTED]
    assert len(errors) == 2 and all("not an object" in str(e) for e in errors)
    errors.clear()
    assert parse_kline_push({"data": "garbage"}, errors=errors) == []  # the whole push is bad
    assert len(errors) == 1 and "'data'" in str(errors[0])


CONTRACT = {
    "contractId": "123",
    "symbol": "XAUT-USDT",
    "size": "1",
    "quantityPrecision": 0,
    "pricePrecision": "2",
    "feeRate": "0.0005",
    "makerFeeRate": "0.0002",
    "takerFeeRate": "0.0005",
    "tradeMinQuantity": "1",
    "tradeMinUSDT": "2",
    "maxLongLeverage": 50,
    "maxShortLeverage": "20",
    "currency": "USDT",
    "asset": "XAUT",
    "status": 1,
    "apiStateOpen": "true",
    "launchTime": 1735689600000,
    "displayName": "XAUT-USDT",
}


def test_contract_with_quantity_precision_zero():
    spec = parse_contract(CONTRACT)
    assert spec.symbol == "XAUT-USDT" and spec.asset == "XAUT" and spec.currency == "USDT"
    assert spec.price_precision == 2 and spec.price_increment == pytest.approx(0.01)
    assert spec.quantity_precision == 0 and spec.quantity_increment == 1.0
    assert spec.min_quantity == 1.0 and spec.min_notional == 2.0
    assert (spec.maker_fee_rate, spec.taker_fee_rate) == (0.0002, 0.0005)
    assert (spec.max_long_leverage, spec.max_short_leverage) == (50, 20)
    assert spec.launch_time == datetime(2025, 1, 1, tzinfo=UTC)
    assert spec.contract_id == "123" and spec.contract_size == 1.0 and spec.status == 1
    assert spec.raw == CONTRACT


def test_contract_optional_fields_and_fee_fallback():
    row = {
        k: v
        for k, v in CONTRACT.items()
        if k
        not in {
            "makerFeeRate",
            "takerFeeRate",
            "launchTime",
            "asset",
            "currency",
            "displayName",
            "size",
            "status",
            "contractId",
        }
    }
    spec = parse_contract(row)
    assert spec.maker_fee_rate == spec.taker_fee_rate == 0.0005
    assert spec.launch_time is None and spec.contract_size is None
    assert (spec.asset, spec.currency) == ("XAUT", "USDT")  # derived from the symbol


@pytest.mark.parametrize(
    "missing", ["symbol", "pricePrecision", "quantityPrecision", "tradeMinQuantity", "tradeMinUSDT"]
)
def test_contract_missing_required_field(missing):
    row = {k: v for k, v in CONTRACT.items() if k != missing}
    with pytest.raises(ValueError, match=repr(missing)):
        parse_contract(row)


def test_contract_bad_precision():
    with pytest.raises(ValueError, match="'quantityPrecision'"):
        parse_contract({**CONTRACT, "quantityPrecision": "0.5"})


def test_klines_to_frame_is_canonical():
    klines = [Kline(1735689660000, 2, 3, 1, 2, 5), EXPECTED]
    frame = klines_to_frame(klines, "XAUT-USDT", "1m", "bingx_rest")
    assert frame.schema == pl.Schema(CANDLE_SCHEMA)
    assert frame["open_time"].to_list() == [
        datetime(2025, 1, 1, 0, 0, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 1, tzinfo=UTC),
    ]
    assert frame["close"].to_list() == [2650.0, 2.0]
    assert klines_to_frame([], "XAUT-USDT", "1m", "simulator").height == 0
    with pytest.raises(ValueError, match="source"):
        klines_to_frame(klines, "XAUT-USDT", "1m", "made_up")
    with pytest.raises(ValueError, match="interval"):
        klines_to_frame(klines, "XAUT-USDT", "7m", "simulator")


def test_klines_to_frame_takes_the_calendar_month_and_rejects_unknown_intervals():
    from goldrl_dagster.lib.bingx.models import Kline, klines_to_frame

    march = Kline(1_740_787_200_000, 2900.0, 2950.0, 2850.0, 2920.0, 10.0)  # 2025-03-01
    frame = klines_to_frame([march], "XAUT-USDT", "1M", "simulator")
    assert frame["interval"].to_list() == ["1M"]
    assert frame["open_time"][0].isoformat() == "2025-03-01T00:00:00+00:00"
    with pytest.raises(ValueError, match="unknown interval '2M'"):
        klines_to_frame([march], "XAUT-USDT", "2M", "simulator")
