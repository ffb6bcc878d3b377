"""read_candles over columnar_read.read_columns returns exactly the frame the ADBC read returns.

Same dtypes (UTC-aware timestamps), order and values, for one part, many parts on two
connections, and an empty range; and read_columns refuses (None) what it cannot decode exactly
so that callers fall back: NULLs, a dtype not matching the column, parts out of order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg
import pytest

from goldrl_dagster.lib.market.candles import CANDLE_KEY, CANDLE_SCHEMA, conform_candles
from goldrl_dagster.lib.storage import market_store
from goldrl_dagster.lib.storage.bulk import upsert_frame
from goldrl_dagster.lib.storage.columnar_read import read_columns

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _candles(n: int, *, step_minutes: int = 1) -> pl.DataFrame:
    sources = ["bingx_rest", "simulator"]
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": ["XAUT-USDT"] * n,
                "interval": ["1m"] * n,
                "open_time": [T0 + timedelta(minutes=i * step_minutes) for i in range(n)],
                "open": [2000.0 + i / 7 for i in range(n)],
                "high": [2001.0 + i / 3 for i in range(n)],
                "low": [1999.0 - i / 11 for i in range(n)],
                "close": [2000.5 + (i % 17) * 1e-9 for i in range(n)],
                "volume": [float(i % 5) * 0.1 for i in range(n)],
                "source": [sources[(i // 3) % 2] for i in range(n)],
            }
        )
    )


def _arrow_read(db, start: datetime, end: datetime) -> pl.DataFrame:
    expected = (end - start).total_seconds() / 60
    frame = market_store._read_candles_arrow(db, "XAUT-USDT", "1m", start, end, expected)
    return frame.select(
        pl.lit("XAUT-USDT").alias("instrument"),
        pl.lit("1m").alias("interval"),
        *(pl.col(c).cast(CANDLE_SCHEMA[c]) for c in market_store._READ_COLUMNS),
    )


@pytest.fixture(params=["day blocks", "aggregated parts"])
def read_path(request, monkeypatch) -> str:
    """Both ways a multi-day read can go: day blocks, or the parts aggregated directly."""
    if request.param == "aggregated parts":
        monkeypatch.setattr(market_store, "read_candle_blocks", lambda *a, **k: None)
    return request.param


def test_single_part_read_equals_the_adbc_read_and_the_written_frame(clean_database, read_path):
    db = clean_database
    frame = _candles(3_000)
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    start, end = T0 - timedelta(minutes=5), T0 + timedelta(minutes=2_990)
    got = market_store.read_candles(db, "XAUT-USDT", "1m", start, end)
    assert got.schema == CANDLE_SCHEMA
    assert got.equals(_arrow_read(db, start, end))
    assert got.equals(frame.filter(pl.col("open_time") < end))
    assert got["open_time"].dtype == pl.Datetime("us", "UTC")


def test_many_parts_on_two_connections_keep_order_and_values(clean_database, read_path):
    db = clean_database
    # 2,000 bars spread over ~1.4M minutes: the range is split into parts (some empty).
    frame = _candles(2_000, step_minutes=700)
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    start, end = T0, T0 + timedelta(minutes=700 * 2_000)
    assert (end - start).total_seconds() / 60 > 4 * market_store._PART_BARS
    got = market_store.read_candles(db, "XAUT-USDT", "1m", start, end)
    assert got.equals(frame)
    assert got.equals(_arrow_read(db, start, end))


def test_an_empty_range_gives_an_empty_canonical_frame(clean_database):
    got = market_store.read_candles(clean_database, "XAUT-USDT", "1m", T0, T0 + timedelta(days=1))
    assert got.height == 0
    assert got.schema == CANDLE_SCHEMA


def test_what_cannot_be_decoded_exactly_is_refused(clean_database):
    db = clean_database
    with db.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS columnar_nulls (id bigint PRIMARY KEY, x float8)")
        conn.execute("TRUNCATE columnar_nulls")
        conn.execute("INSERT INTO columnar_nulls VALUES (1, 1.5), (2, NULL), (3, 'NaN')")
        conn.commit()
    where = "id >= %s"
    ids = read_columns(db, "columnar_nulls", {"id": pl.Int64}, where, [[0]], "id")
    assert ids is not None and ids["id"].to_list() == [1, 2, 3]
    # A NULL among the values: the caller must read another way.
    both = {"id": pl.Int64, "x": pl.Float64}
    assert read_columns(db, "columnar_nulls", both, where, [[0]], "id") is None
    # A dtype that does not match the column's type.
    assert read_columns(db, "columnar_nulls", {"id": pl.Float64}, where, [[0]], "id") is None
    # Parts out of order would return unsorted rows.
    upsert_frame(db, "candles", _candles(10), CANDLE_KEY)
    columns = {c: CANDLE_SCHEMA[c] for c in market_store._READ_COLUMNS}
    cond = "instrument = %s AND interval = %s AND open_time >= %s AND open_time < %s"
    middle = T0 + timedelta(minutes=5)
    early = ["XAUT-USDT", "1m", T0, middle]
    late = ["XAUT-USDT", "1m", middle, T0 + timedelta(hours=1)]
    assert read_columns(db, "candles", columns, cond, [late, early], "open_time") is None
    assert read_columns(db, "candles", columns, cond, [early, late], "open_time") is not None


def test_a_one_day_read_is_one_statement(clean_database, monkeypatch):
    """The live engine and the feature assets read small ranges: one round trip, no BEGIN."""
    db = clean_database
    upsert_frame(db, "candles", _candles(3 * 1_440), CANDLE_KEY)
    sent: list[tuple[bool, str]] = []
    execute = psycopg.Connection.execute

    def counting(self, query, *args, **kwargs):
        sent.append((self.autocommit, str(query)[:40]))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counting)
    start = T0 + timedelta(days=1)
    got = market_store.read_candles(db, "XAUT-USDT", "1m", start, start + timedelta(days=1))
    monkeypatch.undo()
    assert got.height == 1_440
    # autocommit: psycopg sends no BEGIN/ROLLBACK around the one query.
    assert len(sent) == 1 and sent[0][0] is True
