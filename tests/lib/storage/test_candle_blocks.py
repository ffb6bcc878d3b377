"""Day blocks: a kept day is served as kept until a write changes it, and never when stale.

Every read here is compared with the ADBC read of the same range (row by row, dtypes too):
blocks are a way to read, never another answer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from goldrl_dagster.lib.market.candles import CANDLE_KEY, CANDLE_SCHEMA, conform_candles
from goldrl_dagster.lib.storage import candle_blocks, market_store
from goldrl_dagster.lib.storage.bulk import upsert_frame
from goldrl_dagster.lib.storage.candle_blocks import read_candle_blocks

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 2, 1, tzinfo=UTC)  # every day below has ended
DAY = timedelta(days=1)


def _candles(days: float, *, start: datetime = T0, close: float = 2000.5) -> pl.DataFrame:
    n = int(days * 1_440)
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": ["XAUT-USDT"] * n,
                "interval": ["1m"] * n,
                "open_time": [start + timedelta(minutes=i) for i in range(n)],
                "open": [2000.0 + i / 7 for i in range(n)],
                "high": [2001.0 + i / 3 for i in range(n)],
                "low": [1999.0 - i / 11 for i in range(n)],
                "close": [close + (i % 17) * 1e-9 for i in range(n)],
                "volume": [float(i % 5) * 0.1 for i in range(n)],
                "source": [("bingx_rest", "simulator", "import")[(i // 3) % 3] for i in range(n)],
            }
        )
    )


def _arrow_read(db, start: datetime, end: datetime) -> pl.DataFrame:
    expected = (end - start).total_seconds() / 60
    frame = market_store._read_candles_arrow(db, "XAUT-USDT", "1m", start, end, expected)
    return frame.select(*(pl.col(c).cast(CANDLE_SCHEMA[c]) for c in candle_blocks.BLOCK_COLUMNS))


def _read(db, start: datetime, end: datetime) -> candle_blocks.BlockRead:
    read = read_candle_blocks(db, "XAUT-USDT", "1m", start, end, now=NOW)
    assert read is not None and read.frame is not None
    assert read.frame.equals(_arrow_read(db, start, end))
    return read


def _kept_days(db) -> dict[date, int]:
    with db.connect() as conn:
        return dict(conn.execute("SELECT day, bars FROM candle_blocks ORDER BY day").fetchall())


def test_a_second_read_is_served_from_the_kept_days_with_partial_edges_aggregated(
    clean_database,
):
    db = clean_database
    upsert_frame(db, "candles", _candles(6.5), CANDLE_KEY)
    # 10:00 on day 0 to 05:00 on day 6: days 1..5 are whole, the edges are partial.
    start, end = T0 + timedelta(hours=10), T0 + 6 * DAY + timedelta(hours=5)
    first = _read(db, start, end)
    assert (first.used, first.built) == (0, 5)
    assert _kept_days(db) == {(T0 + i * DAY).date(): 1_440 for i in range(1, 6)}
    again = _read(db, start, end)
    assert (again.used, again.built) == (5, 0)
    assert again.frame is not None and again.frame.height == 14 * 60 + 5 * 1_440 + 5 * 60


def test_a_write_to_a_day_retires_its_block_and_only_that_day_is_built_again(clean_database):
    db = clean_database
    upsert_frame(db, "candles", _candles(4), CANDLE_KEY)
    start, end = T0, T0 + 4 * DAY
    _read(db, start, end)
    changed = _candles(1 / 24, start=T0 + 2 * DAY + timedelta(hours=3), close=1.0)
    upsert_frame(db, "candles", changed, CANDLE_KEY)  # an hour of day 2 healed
    after = _read(db, start, end)
    assert (after.used, after.built) == (3, 1)
    assert after.frame is not None
    assert after.frame.filter(pl.col("close") < 2).height == 60  # the new values, not the kept
    with db.connect() as conn:
        conn.execute("DELETE FROM candles WHERE open_time >= %s AND open_time < %s",
                     (T0 + 3 * DAY, T0 + 3 * DAY + timedelta(minutes=10)))  # fmt: skip
        conn.commit()
    deleted = _read(db, start, end)
    assert (deleted.used, deleted.built) == (3, 1)
    assert _kept_days(db)[(T0 + 3 * DAY).date()] == 1_430


def test_a_block_built_from_a_snapshot_older_than_a_write_is_never_used(clean_database):
    """The race the versions close: a reader builds day 1 from its snapshot, a write to day 1
    commits before the reader stores the block; the block carries the version it was built at,
    so the next read builds the day again instead of serving the old rows."""
    db = clean_database
    upsert_frame(db, "candles", _candles(3), CANDLE_KEY)
    keep = candle_blocks._keep
    raced: list[int] = []

    def write_then_keep(db_, key, built, versions):
        if not raced:  # the concurrent write lands between the snapshot and the keep
            upsert_frame(db, "candles", _candles(1 / 24, start=T0 + DAY, close=1.0), CANDLE_KEY)
            raced.append(1)
        keep(db_, key, built, versions)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(candle_blocks, "_keep", write_then_keep)
        stale = _read_without_check(db, T0, T0 + 3 * DAY)
    assert stale.frame is not None and stale.frame.filter(pl.col("close") < 2).height == 0
    fresh = _read(db, T0, T0 + 3 * DAY)
    assert (fresh.used, fresh.built) == (2, 1)  # day 1's block was stale by version
    assert fresh.frame is not None and fresh.frame.filter(pl.col("close") < 2).height == 60


def _read_without_check(db, start: datetime, end: datetime) -> candle_blocks.BlockRead:
    read = read_candle_blocks(db, "XAUT-USDT", "1m", start, end, now=NOW)
    assert read is not None
    return read


def test_truncating_candles_retires_every_block(clean_database):
    db = clean_database
    upsert_frame(db, "candles", _candles(3), CANDLE_KEY)
    _read(db, T0, T0 + 3 * DAY)
    with db.connect() as conn:
        conn.execute("TRUNCATE candles")
        conn.commit()
    assert _kept_days(db) == {}
    empty = _read(db, T0, T0 + 3 * DAY)
    assert empty.frame is not None and empty.frame.height == 0
    assert _kept_days(db) == {(T0 + i * DAY).date(): 0 for i in range(3)}  # empty days kept
    upsert_frame(db, "candles", _candles(3), CANDLE_KEY)
    refilled = _read(db, T0, T0 + 3 * DAY)
    assert (refilled.used, refilled.built) == (0, 3) and refilled.frame is not None
    assert refilled.frame.height == 3 * 1_440


def test_days_not_yet_ended_and_short_ranges_are_not_kept(clean_database):
    db = clean_database
    upsert_frame(db, "candles", _candles(3), CANDLE_KEY)
    now = T0 + 2 * DAY + timedelta(hours=6)  # day 2 is still being written
    read = read_candle_blocks(db, "XAUT-USDT", "1m", T0, T0 + 3 * DAY, now=now)
    assert read is not None and read.frame is not None
    assert read.frame.equals(_arrow_read(db, T0, T0 + 3 * DAY))
    assert set(_kept_days(db)) == {T0.date(), (T0 + DAY).date()}
    one_day = read_candle_blocks(db, "XAUT-USDT", "1m", T0, T0 + DAY + timedelta(hours=23))
    assert one_day is None  # fewer than two whole days: read directly, one statement


def test_a_block_of_another_layout_is_not_used(clean_database):
    db = clean_database
    upsert_frame(db, "candles", _candles(2), CANDLE_KEY)
    _read(db, T0, T0 + 2 * DAY)
    with db.connect() as conn:
        conn.execute("UPDATE candle_blocks SET layout = 'open_time:timestamptz'")
        conn.commit()
    read = _read(db, T0, T0 + 2 * DAY)
    assert (read.used, read.built) == (0, 2)
    with db.connect() as conn:
        layouts = {r[0] for r in conn.execute("SELECT layout FROM candle_blocks")}
    assert layouts == {candle_blocks.LAYOUT}  # rebuilt in this layout


def test_read_candles_goes_through_blocks_and_matches_the_written_frame(clean_database):
    db = clean_database
    frame = _candles(5)
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    for _ in range(2):
        got = market_store.read_candles(db, "XAUT-USDT", "1m", T0, T0 + 5 * DAY)
        assert got.schema == CANDLE_SCHEMA and got.equals(frame)
    assert len(_kept_days(db)) == 5


def test_blocks_built_in_parts_on_two_connections_are_cut_into_days_exactly(
    clean_database, monkeypatch
):
    """Runs longer than PART_DAYS are aggregated in parts shared by two connections in one
    snapshot, then cut into days by open_time; a day without a bar is an empty block."""
    db = clean_database
    monkeypatch.setattr(candle_blocks, "PART_DAYS", 2)
    frame = _candles(7).filter(
        (pl.col("open_time") < T0 + 2 * DAY) | (pl.col("open_time") >= T0 + 3 * DAY)
    )  # day 2 has no bar
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    start, end = T0 + timedelta(minutes=1), T0 + 7 * DAY - timedelta(minutes=1)
    assert candle_blocks._runs([(T0 + i * DAY).date() for i in range(1, 6)]) == [
        ((T0 + DAY).date(), (T0 + 2 * DAY).date()),
        ((T0 + 3 * DAY).date(), (T0 + 4 * DAY).date()),
        ((T0 + 5 * DAY).date(), (T0 + 5 * DAY).date()),
    ]
    first = _read(db, start, end)
    assert (first.used, first.built) == (0, 5)
    assert _kept_days(db) == {
        (T0 + i * DAY).date(): 0 if i == 2 else 1_440 for i in range(1, 6)
    }
    again = _read(db, start, end)
    assert (again.used, again.built) == (5, 0)
    assert again.frame is not None and again.frame.height == frame.height - 2
