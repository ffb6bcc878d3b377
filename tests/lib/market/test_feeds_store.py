"""Feed tables (migration 0002) round-trip through feeds_store, idempotently, on real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from goldrl_dagster.lib.bingx.models import (
    DepthSnapshot,
    FundingRate,
    Kline,
    OpenInterest,
    PremiumIndex,
    Ticker24h,
    Trade,
    klines_to_frame,
    parse_trade_row,
    trade_key,
)
from goldrl_dagster.lib.storage import feeds_store as fs
from goldrl_dagster.lib.storage.bulk import read_frame

SYMBOL = "XAUT-USDT"
T0 = datetime(2025, 3, 10, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
HOUR_MS = 3_600_000
WIDE = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def ingested(db, table):
    return read_frame(db, f"SELECT ingested_at FROM {table} ORDER BY 1")["ingested_at"].to_list()


def test_funding_rates_round_trip_and_rerun_is_idempotent(clean_database):
    db = clean_database
    rates = [FundingRate(SYMBOL, T0_MS + i * 4 * HOUR_MS, 0.0001 * (i - 1)) for i in range(3)]
    frame = fs.funding_frame(rates, "bingx_rest")
    assert fs.write_funding_rates(db, frame) == 3
    assert fs.write_funding_rates(db, frame) == 3
    stored = fs.read_feed(db, "funding_rates", SYMBOL, *WIDE)
    assert stored.select("funding_time", "funding_rate").rows() == [
        (at(r.funding_time_ms), r.funding_rate) for r in rates
    ]
    # Never assumed: the history endpoint states no interval, and the plain writer derives
    # none (store_funding_rates does: tests/lib/market/test_funding_intervals.py).
    assert stored["funding_interval_hours"].null_count() == 3
    assert stored["funding_interval_source"].null_count() == 3


def test_a_reported_funding_interval_survives_a_refetch_without_one(clean_database):
    db = clean_database
    rates = [FundingRate(SYMBOL, T0_MS + i * 4 * HOUR_MS, 0.0002) for i in range(2)]
    fs.write_funding_rates(db, fs.with_funding_interval(fs.funding_frame(rates, "simulator"), 4))
    fs.write_funding_rates(db, fs.funding_frame(rates, "simulator"))
    stored = fs.read_feed(db, "funding_rates", SYMBOL, *WIDE)
    assert stored["funding_interval_hours"].to_list() == [4, 4]
    assert stored["funding_interval_source"].to_list() == ["reported", "reported"]
    with pytest.raises(ValueError, match="positive number of hours"):
        fs.with_funding_interval(fs.funding_frame(rates, "simulator"), 0)


def test_snapshot_feeds_round_trip(clean_database):
    db = clean_database
    premium = PremiumIndex(SYMBOL, T0_MS, 3001.5, 3000.25, 0.0001, T0_MS + 2 * HOUR_MS, 2)
    fs.write_premium_index(db, fs.premium_index_frame([premium], "simulator"))
    row = fs.read_feed(db, "premium_index_snapshots", SYMBOL, *WIDE).row(0, named=True)
    assert row == {
        "instrument": SYMBOL,
        "snapshot_time": T0,
        "mark_price": 3001.5,
        "index_price": 3000.25,
        "last_funding_rate": 0.0001,
        "next_funding_time": at(T0_MS + 2 * HOUR_MS),
        "funding_interval_hours": 2,
        "source": "simulator",
    }

    fs.write_open_interest(
        db, fs.open_interest_frame([OpenInterest(SYMBOL, T0_MS, 1234.5)], "simulator")
    )
    oi = fs.read_feed(db, "open_interest_snapshots", SYMBOL, *WIDE).row(0, named=True)
    assert oi["open_interest"] == 1234.5
    assert "disputed" in oi["unit_note"]

    ticker = Ticker24h(
        SYMBOL, T0_MS, 3000.0, 2990.0, 3010.0, 2980.0, 12.5, 37500.0, 0.33, None, None, 3000.5, 2.0
    )
    fs.write_tickers(db, fs.ticker_frame([ticker], "bingx_rest"))
    t = fs.read_feed(db, "ticker_snapshots", SYMBOL, *WIDE).row(0, named=True)
    assert (t["last_price"], t["bid_price"], t["ask_price"], t["ask_qty"]) == (
        3000.0,
        None,
        3000.5,
        2.0,
    )


def test_order_book_levels_are_stored_best_first_as_arrays(clean_database):
    db = clean_database
    # Levels given worst first, as BingX has sent asks: storage orders them best first.
    book = DepthSnapshot(
        SYMBOL, T0_MS, ((2999.0, 1.0), (2999.5, 2.0)), ((3001.0, 4.0), (3000.5, 3.0))
    )
    fs.write_depth(db, fs.depth_frame([book], "simulator", depth_limit=5))
    row = fs.read_feed(db, "depth_snapshots", SYMBOL, *WIDE).row(0, named=True)
    assert row["depth_limit"] == 5
    assert row["bid_prices"] == [2999.5, 2999.0] and row["bid_qtys"] == [2.0, 1.0]
    assert row["ask_prices"] == [3000.5, 3001.0] and row["ask_qtys"] == [3.0, 4.0]


def test_snapshots_append_and_same_timestamp_rewrites(clean_database):
    db = clean_database
    first = OpenInterest(SYMBOL, T0_MS, 10.0)
    fs.write_open_interest(db, fs.open_interest_frame([first], "simulator"))
    fs.write_open_interest(
        db, fs.open_interest_frame([OpenInterest(SYMBOL, T0_MS + 60_000, 11.0)], "simulator")
    )
    fs.write_open_interest(
        db, fs.open_interest_frame([OpenInterest(SYMBOL, T0_MS, 10.5)], "simulator")
    )
    stored = fs.read_feed(db, "open_interest_snapshots", SYMBOL, *WIDE)
    assert stored["open_interest"].to_list() == [10.5, 11.0]


def make_trade(ms: int, price: float, qty: float, maker: bool) -> Trade:
    return Trade(SYMBOL, ms, price, qty, maker, trade_key(SYMBOL, ms, price, qty, maker))


def test_trades_dedupe_by_content_and_keep_the_first_copy(clean_database):
    db = clean_database
    a, b, c = (
        make_trade(T0_MS, 3000.0, 0.5, True),
        make_trade(T0_MS, 3000.0, 0.5, False),
        make_trade(T0_MS + 5, 3000.1, 0.2, True),
    )
    assert fs.write_trades(db, fs.trades_frame([a, b, a], "bingx_ws")) == 2
    first_ingest = ingested(db, "trades")
    fs.write_trades(db, fs.trades_frame([b, c], "bingx_rest"))
    stored = fs.read_feed(db, "trades", SYMBOL, *WIDE)
    assert sorted(stored["trade_key"].to_list()) == sorted({a.trade_key, b.trade_key, c.trade_key})
    by_key = {r["trade_key"]: r for r in stored.iter_rows(named=True)}
    # A trade seen first on the stream keeps its first record (source and ingestion time).
    assert by_key[b.trade_key]["source"] == "bingx_ws"
    assert by_key[c.trade_key]["source"] == "bingx_rest"
    assert set(first_ingest) <= set(ingested(db, "trades"))


def test_distinct_fills_with_the_same_content_are_two_trades(clean_database):
    # Recorded REST rows: two fills at the same millisecond, price, size and side.
    db = clean_database
    row = {"time": T0_MS, "isBuyerMaker": True, "price": "3000.0", "qty": "0.5",
           "quoteQty": "1500.0"}  # fmt: skip
    first = parse_trade_row({**row, "fillId": "8812345678"}, SYMBOL)
    second = parse_trade_row({**row, "fillId": "8812345679"}, SYMBOL)
    assert fs.write_trades(db, fs.trades_frame([first, second], "bingx_rest")) == 2
    fs.write_trades(db, fs.trades_frame([second, first], "bingx_rest"))  # fetched again
    stored = fs.read_feed(db, "trades", SYMBOL, *WIDE)
    assert sorted(stored["trade_key"].to_list()) == sorted([first.trade_key, second.trade_key])


def test_mark_price_candles_round_trip(clean_database):
    db = clean_database
    klines = [
        Kline(T0_MS + i * 60_000, 3000 + i, 3001 + i, 2999 + i, 3000.5 + i, 0.0) for i in range(3)
    ]
    frame = klines_to_frame(klines, SYMBOL, "1m", "simulator")
    assert fs.write_mark_price_candles(db, frame) == 3
    fs.write_mark_price_candles(db, frame)
    stored = fs.read_mark_price_candles(db, SYMBOL, "1m", *WIDE)
    assert stored.equals(frame)
    assert fs.read_mark_price_candles(db, SYMBOL, "5m", *WIDE).height == 0


def test_findings_are_unique_per_kind_instrument_interval_time(clean_database):
    db = clean_database
    finding = {
        "kind": "interval_mismatch", "instrument": SYMBOL, "interval": "5m", "at": T0,
        "severity": "warning", "detail": {"close": {"ours": 1.0, "theirs": 1.1}},
    }  # fmt: skip
    assert fs.write_findings(db, [finding]) == 1
    fs.write_findings(db, [{**finding, "detail": {"close": {"ours": 1.0, "theirs": 1.2}}}])
    fs.write_findings(db, [{**finding, "interval": "15m"}])
    stored = fs.read_findings(db, kind="interval_mismatch", instrument=SYMBOL)
    assert sorted(stored.select("interval", "at").rows()) == [("15m", T0), ("5m", T0)]
    five = fs.read_findings(db, interval="5m")
    assert five.height == 1
    assert '"theirs": 1.2' in five["detail"][0]


@pytest.mark.parametrize(
    ("finding", "message"),
    [
        (
            {"kind": "k", "instrument": SYMBOL, "at": T0, "severity": "fatal", "detail": {}},
            "severity",
        ),
        (
            {
                "kind": "k",
                "instrument": SYMBOL,
                "at": T0.replace(tzinfo=None),
                "severity": "info",
                "detail": {},
            },
            "aware",
        ),
        ({"kind": "k", "at": T0, "severity": "info", "detail": {}}, "lacks"),
    ],
)
def test_bad_findings_are_rejected(clean_database, finding, message):
    with pytest.raises(ValueError, match=message):
        fs.write_findings(clean_database, [finding])


def test_bad_frames_are_rejected_and_nothing_is_written(clean_database):
    db = clean_database
    with pytest.raises(ValueError, match="unknown source"):
        fs.funding_frame([FundingRate(SYMBOL, T0_MS, 0.0)], "binance")
    bad = fs.funding_frame([FundingRate(SYMBOL, T0_MS, 0.0)], "simulator").with_columns(
        pl.lit("ftx").alias("source")
    )
    with pytest.raises(ValueError, match="unknown source"):
        fs.write_funding_rates(db, bad)
    with pytest.raises(ValueError, match="lacks column"):
        fs.write_open_interest(db, pl.DataFrame({"instrument": [SYMBOL]}))
    with pytest.raises(ValueError, match="unknown feed table"):
        fs.read_feed(db, "candles; drop table trades", SYMBOL, *WIDE)
    assert fs.read_feed(db, "funding_rates", SYMBOL, *WIDE).height == 0


def test_database_constraints_back_the_writers(clean_database):
    with clean_database.connect() as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO trades (instrument, trade_key, trade_time, price, quantity, "
            "is_buyer_maker, source) VALUES (%s, 'k', now(), 1, 1, true, 'somewhere')",
            (SYMBOL,),
        )
    with clean_database.connect() as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO depth_snapshots (instrument, snapshot_time, depth_limit, bid_prices, "
            "bid_qtys, ask_prices, ask_qtys, source) VALUES "
            "(%s, now(), 5, '{1,2}', '{1}', '{}', '{}', 'simulator')",
            (SYMBOL,),
        )


def test_range_reads_bound_by_time(clean_database):
    db = clean_database
    rates = [FundingRate(SYMBOL, T0_MS + i * HOUR_MS, 0.0) for i in range(5)]
    fs.write_funding_rates(db, fs.funding_frame(rates, "simulator"))
    window = fs.read_feed(
        db, "funding_rates", SYMBOL, T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    )
    assert window["funding_time"].to_list() == [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert fs.read_feed(db, "funding_rates", "PAXG-USDT", *WIDE).height == 0
