"""upsert_frame's fast paths (direct COPY, read-back diff) give the same state as a plain merge.

Each test checks the stored rows against what ``INSERT … ON CONFLICT`` semantics demand, and
uses ``xmin`` (the id of the transaction that last wrote a tuple) to prove which stored rows
were left untouched.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from goldrl_dagster.lib.market.candles import CANDLE_KEY, conform_candles
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame

T0 = datetime(2025, 1, 1, tzinfo=UTC)
VALUES = ["open", "high", "low", "close", "volume", "source"]


def _candles(n: int, *, start: int = 0, close: float = 100.0, instrument: str = "XAUT-USDT"):
    times = [T0 + timedelta(minutes=start + i) for i in range(n)]
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": [instrument] * n,
                "interval": ["1m"] * n,
                "open_time": times,
                "open": [close] * n,
                "high": [close + 1] * n,
                "low": [close - 1] * n,
                "close": [close] * n,
                "volume": [float(start + i) for i in range(n)],
                "source": ["simulator"] * n,
            }
        )
    )


def _stored(db) -> pl.DataFrame:
    return read_frame(
        db,
        "SELECT instrument, interval, open_time, open, high, low, close, volume, source, "
        "xmin::text AS xmin, ingested_at FROM candles ORDER BY instrument, open_time",
    )


def _expected_merge(stored: pl.DataFrame, frame: pl.DataFrame) -> pl.DataFrame:
    """What one INSERT … ON CONFLICT DO UPDATE of ``frame`` leaves: frame rows win by key."""
    kept = stored.select(frame.columns).join(frame, on=list(CANDLE_KEY), how="anti")
    return pl.concat([kept, frame]).sort(["instrument", "open_time"])


def test_rerun_of_identical_rows_rewrites_nothing(clean_database):
    db = clean_database
    frame = _candles(300)
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    before = _stored(db)
    assert upsert_frame(db, "candles", frame, CANDLE_KEY) == 300
    after = _stored(db)
    assert after.equals(before)  # same values, same xmin, same ingested_at
    assert after.select(frame.columns).equals(frame)


def test_partial_overlap_writes_only_new_and_changed_rows(clean_database):
    db = clean_database
    upsert_frame(db, "candles", _candles(100), CANDLE_KEY)
    before = _stored(db)
    # Rows 50-99 are re-sent: 50-59 with a new close, 60-99 unchanged; rows 100-149 are new.
    frame = pl.concat(
        [
            _candles(10, start=50, close=101.0),
            _candles(40, start=60),
            _candles(50, start=100),
        ]
    )
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    after = _stored(db)
    assert after.select(frame.columns).equals(_expected_merge(before, frame))
    old_xmin = dict(zip(before["open_time"], before["xmin"], strict=True))
    rewritten = {
        t for t, x in zip(after["open_time"], after["xmin"], strict=True) if x != old_xmin.get(t)
    }
    assert rewritten == set(frame["open_time"].head(10)) | set(frame["open_time"].tail(50))


def test_keep_existing_rows_when_update_is_false(clean_database):
    db = clean_database
    upsert_frame(db, "candles", _candles(20), CANDLE_KEY)
    frame = _candles(30, start=10, close=150.0)
    upsert_frame(db, "candles", frame, CANDLE_KEY, update=False)
    stored = _stored(db)
    assert stored.height == 40
    assert stored["close"].to_list() == [100.0] * 20 + [150.0] * 20


def test_sparse_rows_inside_a_large_stored_range_are_merged(clean_database):
    db = clean_database
    upsert_frame(db, "candles", _candles(200), CANDLE_KEY)
    before = _stored(db)
    # Two rows whose key range spans all 200 stored rows (a gap-fill shape): the read-back
    # would cost more than the merge, so the merge path writes them.
    frame = pl.concat([_candles(1, start=0, close=90.0), _candles(1, start=199, close=90.0)])
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    after = _stored(db)
    assert after.select(frame.columns).equals(_expected_merge(before, frame))
    unchanged = after.filter(~pl.col("open_time").is_in(frame["open_time"].implode()))
    assert unchanged["xmin"].equals(before["xmin"].slice(1, 198))


def test_failed_copy_into_an_empty_table_writes_nothing(clean_database):
    db = clean_database
    bad = _candles(5).with_columns(pl.lit(None, pl.Float64).alias("high"))
    with pytest.raises(Exception, match="null"):
        upsert_frame(db, "candles", bad, CANDLE_KEY)
    assert _stored(db).height == 0


def test_key_columns_without_a_unique_index_are_refused(clean_database):
    db = clean_database
    frame = _candles(5)
    # The direct COPY would happily insert these; the merge refuses a key no index backs.
    with pytest.raises(Exception, match="ON CONFLICT"):
        upsert_frame(db, "candles", frame, ["instrument", "open_time"])
    assert _stored(db).height == 0


def test_quotes_in_key_values_are_matched_literally(clean_database):
    db = clean_database
    odd = "X'AU\\T\"-{USDT},"
    frame = _candles(10, instrument=odd)
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    before = _stored(db)
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    after = _stored(db)
    assert after["instrument"].unique().to_list() == [odd]
    assert after.equals(before)


def test_concurrent_insert_of_a_key_falls_back_to_merge(clean_database):
    db = clean_database
    frame = _candles(50)
    rival = db.connect()
    row = frame.row(25, named=True)
    rival.execute(
        f"INSERT INTO candles ({', '.join(frame.columns)}) "
        f"VALUES ({', '.join(['%s'] * len(frame.columns))})",
        [*(row[c] for c in frame.columns[:-3]), 999.0, 7.0, "bingx_rest"],
    )
    rival_pid = rival.info.backend_pid
    outcome: dict[str, object] = {}

    def write() -> None:
        try:
            outcome["rows"] = upsert_frame(db, "candles", frame, CANDLE_KEY)
        except Exception as exc:  # surfaced by the assertion below
            outcome["error"] = exc

    writer = threading.Thread(target=write)
    writer.start()
    try:
        # The table looked empty to the writer, so it COPYs straight in and must now wait on
        # the rival's uncommitted key. Commit the rival only once that wait is observed.
        deadline = time.monotonic() + 60
        with db.connect(autocommit=True) as watch:
            while True:
                waiting = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (rival_pid,),
                ).fetchone()
                if waiting and waiting[0] > 0:
                    break
                assert writer.is_alive(), f"writer finished without waiting: {outcome}"
                assert time.monotonic() < deadline, "writer never blocked on the rival's key"
                time.sleep(0.05)
        rival.commit()
    finally:
        rival.close()
        writer.join(60)
    assert outcome == {"rows": 50}
    stored = _stored(db)
    assert stored.select(frame.columns).equals(frame)
