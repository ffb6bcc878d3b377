"""The market-data plane's new tables in dbt, built by real dbt on a planted case worked by hand.

The recorder's rows go through its real writer (``StreamStore``, ``upsert_recorder_beat``);
funding settlements, exchange bars and the gaps of every feed are inserted as their writers
store them. One ``dbt build`` of the models they feed and their tests (module-scoped) checks
``stream_coverage_daily`` (UTC day × instrument × channel), the staging views of the recorder
tables and ``exchange_candles``, the funding interval's provenance and
``data_quality_daily``'s gap columns per feed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from dbt.cli.main import dbtRunnerResult
from dbt_support import (
    analytics,
    dbt_environment,
    drop_analytics_schema,
    failed_nodes,
    node_statuses,
    run_dbt,
    truncate_goldrl_tables,
)

from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.storage.bulk import upsert_frame
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import RecorderBeat, StreamStore, upsert_recorder_beat

DAY1 = datetime(2024, 3, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
DAY3 = DAY1 + timedelta(days=2)
PAXG, XAUT = "PAXG-USDT", "XAUT-USDT"
DEPTH = "depth20@100ms"


def at(hours: float, day: datetime = DAY1) -> datetime:
    return day + timedelta(hours=hours)


def trade(symbol: str, when: datetime, price: float, source: str, occurrence: int = 1) -> tuple:
    key = f"{int(when.timestamp() * 1000)}:{price}:0.5:false"
    return (symbol, key, occurrence, when, price, 0.5, False, None, source)


def book(symbol: str, channel: str, when: datetime, update_id: int | None) -> tuple:
    return (symbol, channel, when, update_id, 2000.0, 2000.5, [[2000.0, 1.0]], [[2000.5, 2.0]])


# Gaps: (symbol, channel, start, end, reason). Worked by hand in test_stream_coverage_by_day.
GAPS = [
    # mark price lost 23:59:30 → 00:00:45: 30 s on day 1, 45 s on day 2, counted on day 1.
    (PAXG, "markPrice", at(24 - 30 / 3600), at(45 / 3600, DAY2), "disconnect"),
    # two skipped incrDepth ids: two resyncs, zero long.
    (PAXG, "incrDepth", at(10), at(10), "sequence_skip"),
    (PAXG, "incrDepth", at(11), at(11), "sequence_skip"),
    # trades older than one REST page: 12:00 → 12:02, 120 s.
    (PAXG, "trade", at(12), at(12 + 2 / 60), "rest_window_exceeded"),
    # ticker: 10 s at 05:00, and 10 s ending exactly at midnight (nothing on day 2).
    (PAXG, "ticker", at(5), at(5 + 10 / 3600), "disconnect"),
    (PAXG, "ticker", at(24 - 10 / 3600), DAY2, "disconnect"),
    # a day with nothing recorded on bookTicker but a 90 s hole.
    (PAXG, "bookTicker", at(1, DAY3), at(1 + 90 / 3600, DAY3), "disconnect"),
]


def plant_recorder(db: Database) -> None:
    """What a recorder would have written, through its own writer (duplicates offered)."""
    batches = {
        "stream_trades": [
            trade(PAXG, at(9), 2000.0, "push"),
            trade(PAXG, at(9), 2000.0, "push"),  # a repeated push: stored once
            trade(PAXG, at(9), 2000.0, "push", occurrence=2),  # the same print twice
            trade(PAXG, at(9.5), 2001.0, "push"),
            trade(PAXG, at(12 + 3 / 60), 2002.0, "rest"),  # refilled after the disconnect
            trade(PAXG, at(0.1, DAY2), 2003.0, "push"),
        ],
        "stream_klines": [
            (PAXG, "1m", at(9), 2000.0, 2001.0, 1999.0, 2000.5, 3.0),
            (PAXG, "1m", at(9 + 1 / 60), 2000.5, 2001.0, 2000.0, 2001.0, 1.0),
        ],
        "stream_book": [
            book(PAXG, DEPTH, at(9), None),
            book(PAXG, DEPTH, at(9.1), None),
            book(PAXG, "incrDepth", at(9), 10),
            book(PAXG, "incrDepth", at(9), 11),  # same millisecond, the next update
            book(PAXG, "incrDepth", at(10), 15),
        ],
        "stream_tickers": [
            (PAXG, at(9), 2000.0, 1990.0, 2010.0, 1985.0, 100.0, 2e5, 0.5, 1999.9, 2000.1),
        ],
        "stream_mark_prices": [
            (PAXG, at(9), 2000.2),
            (PAXG, at(9.2), 2000.4),
            (XAUT, at(9), 2650.0),
        ],
        "stream_book_tickers": [(PAXG, at(9), 7, 1999.9, 1.0, 2000.1, 2.0)],
        "stream_gaps": [(*gap, "planted") for gap in GAPS],
    }
    with StreamStore(db) as store:
        inserted = store.write(batches)
        # A re-run of the same batches writes nothing (the tables' unique keys).
        assert store.write(batches) == dict.fromkeys(batches, 0)
    assert inserted["stream_trades"] == 5
    beat = RecorderBeat(
        recorder_id="rec-1", instruments=(PAXG, XAUT), started_at=at(8),
        heartbeat_seconds=5.0,
        stats={"reconnects": 3, "task_failures": 1, "write_failures": 0,
               "resyncs": {PAXG: 2, XAUT: 0}},
    )  # fmt: skip
    upsert_recorder_beat(db, beat)


def plant_market(db: Database) -> None:
    """Funding with and without a known interval, exchange bars, and gaps of every feed."""
    with db.connect() as conn:
        for when, hours, source in (
            (at(0), 8, "reported"), (at(8), 8, "settlement_spacing"), (at(16), None, None),
        ):  # fmt: skip
            conn.execute(
                "INSERT INTO funding_rates (instrument, funding_time, funding_rate,"
                " funding_interval_hours, funding_interval_source, source)"
                " VALUES (%s, %s, 0.0001, %s, %s, 'simulator')",
                (PAXG, when, hours, source),
            )
        for hour in (0, 1):
            conn.execute(
                "INSERT INTO exchange_candles (instrument, interval, open_time, open, high, low,"
                " close, volume, source, ingested_at)"
                " VALUES (%s, '1h', %s, 2000, 2002, 1998, 2001, 10, 'simulator', %s)",
                (PAXG, at(hour), at(hour + 1)),
            )
        # (feed, instrument, start, missing, status): a healed candle gap and a healing
        # mark-price gap on PAXG day 1; an open funding gap on PAXG day 2; an unrecoverable
        # mark-price gap on XAUT day 2 (both days with every 1m candle stored).
        gaps = [
            ("candles", PAXG, at(3), 2, "healed"),
            ("mark_price_candles", PAXG, at(6), 4, "healing"),
            ("funding_rates", PAXG, at(16, DAY2), 1, "found"),
            ("mark_price_candles", XAUT, at(2, DAY2), 3, "unrecoverable"),
        ]
        for feed, instrument, start, missing, status in gaps:
            interval = "8h" if feed == "funding_rates" else "1m"
            step = timedelta(hours=8) if feed == "funding_rates" else timedelta(minutes=1)
            conn.execute(
                "INSERT INTO candle_gaps (feed, instrument, interval, gap_start, gap_end,"
                " missing_bars, status, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (feed, instrument, interval, start, start + missing * step, missing, status,
                 f"planted {feed} gap"),
            )  # fmt: skip
        conn.commit()
    for symbol in (PAXG, XAUT):
        upsert_frame(db, "candles", full_day(symbol, DAY2), ["instrument", "interval", "open_time"])


def full_day(symbol: str, day: datetime) -> pl.DataFrame:
    """Every 1m candle of a UTC day."""
    times = [day + timedelta(minutes=i) for i in range(1440)]
    flat = [2000.0] * len(times)
    return conform_candles(
        pl.DataFrame(
            {"instrument": [symbol] * len(times), "interval": ["1m"] * len(times),
             "open_time": times, "open": flat, "high": flat, "low": flat, "close": flat,
             "volume": [1.0] * len(times), "source": ["simulator"] * len(times)}
        )
    )  # fmt: skip


BUILT_MODELS = (
    "+stream_coverage_daily", "+data_quality_daily", "+stg_market__exchange_candles",
    "+stg_market__funding_rates", "+stg_recorder__recorder_heartbeats", "stg_market__instruments",
)  # fmt: skip


@dataclass(frozen=True)
class Built:
    db: Database
    tmp_path: Path
    result: dbtRunnerResult


@pytest.fixture(scope="module")
def built(database: Database, tmp_path_factory: pytest.TempPathFactory):
    """Plant the case once and run one `dbt build` of the models it feeds, with their tests."""
    db = database
    tmp_path = tmp_path_factory.mktemp("streams")
    with dbt_environment(db):
        truncate_goldrl_tables(db)
        plant_recorder(db)
        plant_market(db)
        # Only what this case feeds (and its tests): the rest of the project is other files'.
        result = run_dbt(
            tmp_path, "build", "--select", *BUILT_MODELS, "--indirect-selection", "buildable"
        )
        yield Built(db=db, tmp_path=tmp_path, result=result)
        truncate_goldrl_tables(db)
        drop_analytics_schema(db)


def test_the_build_passes_every_data_test(built):
    assert built.result.success, failed_nodes(built.result)
    statuses = node_statuses(built.result)
    for node in (
        "stream_coverage_daily",
        "stg_recorder__stream_trades",
        "stg_recorder__stream_book",
        "stg_recorder__stream_gaps",
        "stg_recorder__recorder_heartbeats",
        "stg_market__exchange_candles",
    ):
        assert statuses[node] == "success", node
    for test in (
        "unique_combination_stream_coverage_daily_day__instrument__channel",
        "unique_stg_recorder__stream_trades_trade_key",
        "unique_stg_recorder__stream_book_book_key",
        "assert_data_quality_gaps_per_feed",
    ):
        assert statuses[test] == "pass", test


def test_stream_coverage_by_day(built):
    coverage = analytics(built.db, "stream_coverage_daily", "day, instrument, channel")
    rows = {(r["day"], r["instrument"], r["channel"]): r for r in coverage.iter_rows(named=True)}
    d1, d2, d3 = DAY1.date(), DAY2.date(), DAY3.date()
    assert set(rows) == {
        (d1, PAXG, "trade"), (d2, PAXG, "trade"), (d1, PAXG, "kline_1m"), (d1, PAXG, DEPTH),
        (d1, PAXG, "incrDepth"), (d1, PAXG, "ticker"), (d1, PAXG, "markPrice"),
        (d2, PAXG, "markPrice"), (d1, PAXG, "bookTicker"), (d3, PAXG, "bookTicker"),
        (d1, XAUT, "markPrice"),
    }  # fmt: skip

    def numbers(key: tuple, *columns: str) -> tuple:
        return tuple(rows[key][c] for c in columns)

    trades = rows[(d1, PAXG, "trade")]
    # 4 distinct prints (the repeated push stored once), one of them refilled over REST.
    assert numbers((d1, PAXG, "trade"), "records", "records_refilled") == (4, 1)
    assert (trades["first_record_at"], trades["last_record_at"]) == (at(9), at(12 + 3 / 60))
    assert numbers((d1, PAXG, "trade"), "gaps", "gaps_rest_window_exceeded") == (1, 1)
    assert trades["gap_seconds_rest_window_exceeded"] == pytest.approx(120.0)
    assert trades["source_table"] == "stream_trades"
    assert numbers((d2, PAXG, "trade"), "records", "gaps", "gap_seconds") == (1, 0, 0)
    assert numbers((d1, PAXG, "kline_1m"), "records", "source_table") == (2, "stream_klines")
    assert numbers((d1, PAXG, DEPTH), "records", "source_table") == (2, "stream_book")
    incr = numbers((d1, PAXG, "incrDepth"), "records", "gaps", "gaps_sequence_skip", "resyncs")
    assert incr == (3, 2, 2, 2)
    assert rows[(d1, PAXG, "incrDepth")]["gap_seconds"] == 0
    ticker = rows[(d1, PAXG, "ticker")]
    assert (ticker["records"], ticker["gaps"], ticker["gaps_disconnect"]) == (1, 2, 2)
    assert ticker["gap_seconds_disconnect"] == pytest.approx(20.0)  # 10 s + 10 s to midnight
    # The mark-price gap across midnight: counted on day 1, its seconds split over both days.
    mark1, mark2 = rows[(d1, PAXG, "markPrice")], rows[(d2, PAXG, "markPrice")]
    assert (mark1["records"], mark1["gaps"]) == (2, 1)
    assert mark1["gap_seconds"] == pytest.approx(30.0)
    assert (mark2["records"], mark2["gaps"]) == (0, 0)
    assert mark2["gap_seconds"] == pytest.approx(45.0)
    assert mark2["gap_seconds_disconnect"] == pytest.approx(45.0)
    # A day with a hole and nothing recorded still has its row.
    assert numbers((d3, PAXG, "bookTicker"), "records", "gaps") == (0, 1)
    assert rows[(d3, PAXG, "bookTicker")]["gap_seconds"] == pytest.approx(90.0)
    assert rows[(d3, PAXG, "bookTicker")]["first_record_at"] is None
    assert numbers((d1, XAUT, "markPrice"), "records", "gaps") == (1, 0)
    # Every stored row and every gap is in the mart exactly once.
    assert coverage["records"].sum() == 5 + 2 + 5 + 1 + 3 + 1
    assert coverage["gaps"].sum() == len(GAPS)
    assert coverage["gap_seconds"].sum() == pytest.approx(30 + 45 + 120 + 20 + 90)


def test_recorder_staging_views(built):
    trades = analytics(built.db, "stg_recorder__stream_trades", "trade_key")
    assert trades.height == 5
    assert set(trades["taker_side"]) == {"buy"}  # planted as buyer-taker prints
    book = analytics(built.db, "stg_recorder__stream_book", "book_key")
    assert book.height == 5
    assert book["spread"].to_list() == pytest.approx([0.5] * 5)
    assert set(book.filter(book["channel"] == "incrDepth")["update_id"]) == {10, 11, 15}
    gaps = analytics(built.db, "stg_recorder__stream_gaps", "gap_start")
    assert gaps["is_resync"].sum() == 2
    beats = analytics(built.db, "stg_recorder__recorder_heartbeats", "recorder_id")
    beat = beats.row(0, named=True)
    assert (beat["recorder_id"], beat["is_running"], beat["resyncs"]) == ("rec-1", True, 2)
    assert (beat["reconnects"], beat["task_failures"]) == (3, 1)
    assert beat["instruments"] == [PAXG, XAUT]


def test_funding_interval_source_and_exchange_bars(built):
    funding = analytics(built.db, "stg_market__funding_rates", "funding_time")
    assert funding["funding_interval_source"].to_list() == [
        "reported", "settlement_spacing", None,
    ]  # fmt: skip
    assert funding["interval_known"].to_list() == [True, True, False]
    bars = analytics(built.db, "stg_market__exchange_candles", "open_time")
    assert bars["interval_ms"].to_list() == [3_600_000, 3_600_000]
    assert set(bars["bar_date"]) == {DAY1.date()}


def test_data_quality_keeps_each_feeds_gaps_apart(built):
    quality = analytics(built.db, "data_quality_daily", "instrument, day")
    rows = {(r["instrument"], r["day"]): r for r in quality.iter_rows(named=True)}
    assert set(rows) == {(PAXG, DAY1.date()), (PAXG, DAY2.date()), (XAUT, DAY2.date())}
    paxg1 = rows[(PAXG, DAY1.date())]
    # Only the healed candle gap is a candle gap; the mark-price gap has its own columns.
    assert (paxg1["gaps_found"], paxg1["gaps_healing"], paxg1["gaps_healed"]) == (0, 0, 1)
    assert (paxg1["gaps_open"], paxg1["open_gap_missing_bars"]) == (0, 0)
    assert (paxg1["mark_price_gaps_open"], paxg1["mark_price_open_missing_bars"]) == (1, 4)
    assert paxg1["funding_gaps_open"] == 0
    # A complete day whose only fault is an open funding gap: warn, and no candle gap.
    paxg2 = rows[(PAXG, DAY2.date())]
    assert (paxg2["bars_stored"], paxg2["gaps_found"], paxg2["gaps_open"]) == (1440, 0, 0)
    assert (paxg2["funding_gaps_open"], paxg2["funding_open_missing_settlements"]) == (1, 1)
    assert paxg2["quality_status"] == "warn"
    # A complete day whose mark-price minutes are lost for good: error, and no candle gap.
    xaut = rows[(XAUT, DAY2.date())]
    assert (xaut["bars_stored"], xaut["gaps_unrecoverable"]) == (1440, 0)
    assert (xaut["mark_price_gaps_unrecoverable"], xaut["mark_price_gaps_open"]) == (1, 0)
    assert xaut["quality_status"] == "error"
    feeds = analytics(built.db, "stg_market__candle_gaps", "gap_start")
    assert set(feeds["feed"]) == {"candles", "mark_price_candles", "funding_rates"}
    assert feeds["reason"].to_list()[0] == "planted candles gap"


def test_freshness_of_the_new_feeds(built):
    result = run_dbt(
        built.tmp_path, "source", "freshness",
        "--select", "source:recorder.recorder_heartbeats", "source:recorder.stream_trades",
        "source:market.exchange_candles",
    )  # fmt: skip
    statuses = node_statuses(result)
    # The recorder wrote and beat just now; the exchange bars were ingested in 2024.
    assert statuses == {
        "recorder_heartbeats": "pass", "stream_trades": "pass", "exchange_candles": "error",
    }  # fmt: skip


# The test below adds bad data; it stays last so the read-only tests see the planted case.


def test_a_gap_on_a_channel_no_table_records_fails_the_build(built):
    with StreamStore(built.db) as store:
        store.write({"stream_gaps": [(PAXG, "lastPrice", at(2), at(3), "disconnect", "")]})
    result = run_dbt(built.tmp_path, "build", "--select", "stream_coverage_daily")
    assert not result.success
    # The gap names a channel the mart maps to no recorder table.
    assert failed_nodes(result) == {"not_null_stream_coverage_daily_source_table"}
