from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from goldrl_dagster.lib.market.candles import CANDLE_KEY, conform_candles
from goldrl_dagster.lib.storage.artifacts import ArtifactIntegrityError, ArtifactStore
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame
from goldrl_dagster.lib.storage.migrations import MigrationError, load_migrations, migrate


def _candles(n: int, close: float = 100.0) -> pl.DataFrame:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": ["XAUT-USDT"] * n,
                "interval": ["1m"] * n,
                "open_time": [t0 + timedelta(minutes=i) for i in range(n)],
                "open": [close] * n,
                "high": [close + 1] * n,
                "low": [close - 1] * n,
                "close": [close] * n,
                "volume": [1.0] * n,
                "source": ["simulator"] * n,
            }
        )
    )


def test_migrate_is_idempotent(database):
    assert migrate(database) == []
    versions = [m.version for m in load_migrations()]
    with database.connect() as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert applied == versions


def test_migrate_refuses_edited_migration(database, tmp_path):
    for m in load_migrations():
        (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql + "\n-- edited")
    with pytest.raises(MigrationError, match="edited after it was applied"):
        migrate(database, tmp_path)


def test_upsert_is_idempotent_and_updates(clean_database):
    frame = _candles(500)
    assert upsert_frame(clean_database, "candles", frame, CANDLE_KEY) == 500
    assert upsert_frame(clean_database, "candles", frame, CANDLE_KEY) == 500
    changed = frame.with_columns(pl.lit(105.0).alias("close"))
    upsert_frame(clean_database, "candles", changed.head(10), CANDLE_KEY)
    stored = read_frame(
        clean_database,
        "SELECT instrument, interval, open_time, open, high, low, close, volume, source "
        "FROM candles ORDER BY open_time",
    )
    assert stored.height == 500
    assert stored["close"].head(10).to_list() == [105.0] * 10
    assert stored["close"].tail(490).unique().to_list() == [100.0]
    assert stored.schema["open_time"] == pl.Datetime("us", "UTC")


def test_upsert_rejects_duplicate_keys_without_writing(clean_database):
    frame = pl.concat([_candles(3), _candles(1)])
    with pytest.raises(ValueError, match="duplicate keys"):
        upsert_frame(clean_database, "candles", frame, CANDLE_KEY)
    assert read_frame(clean_database, "SELECT count(*) AS n FROM candles")["n"][0] == 0


def test_failed_merge_leaves_table_untouched(clean_database):
    upsert_frame(clean_database, "candles", _candles(5), CANDLE_KEY)
    bad = _candles(5, close=200.0).with_columns(pl.lit(None, pl.Float64).alias("high"))
    with pytest.raises(Exception, match="null"):
        upsert_frame(clean_database, "candles", bad, CANDLE_KEY)
    stored = read_frame(clean_database, "SELECT close FROM candles")
    assert stored["close"].to_list() == [100.0] * 5


def test_read_frame_binds_parameters(clean_database):
    upsert_frame(clean_database, "candles", _candles(10), CANDLE_KEY)
    frame = read_frame(
        clean_database,
        "SELECT open_time FROM candles WHERE open_time >= $1 ORDER BY open_time",
        [datetime(2025, 1, 1, 0, 5, tzinfo=UTC)],
    )
    assert frame.height == 5


def test_artifact_store_verifies_checksum(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    stored = store.put_bytes(b"model weights", ".zip")
    assert store.put_bytes(b"model weights", ".zip") == stored
    assert store.get_bytes(stored) == b"model weights"
    path = store.path_for(stored)
    path.write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError, match="modified or corrupted"):
        store.get_bytes(stored)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        store.path_for(stored)


def test_large_range_read_is_split_but_identical(clean_database):
    from goldrl_dagster.lib.storage.bulk import read_frames_consistent
    from goldrl_dagster.lib.storage.market_store import _SPLIT_READ_BARS, read_candles

    n = _SPLIT_READ_BARS + 5_000
    frame = _candles(n).with_columns(
        (pl.col("close") + pl.int_range(pl.len()).cast(pl.Float64) / 100).alias("close")
    )
    frame = frame.with_columns(pl.max_horizontal("high", "close").alias("high"))
    upsert_frame(clean_database, "candles", frame, CANDLE_KEY)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    read = read_candles(clean_database, "XAUT-USDT", "1m", start, start + timedelta(minutes=n))
    assert read.equals(frame)
    # Halves read from one snapshot add up to the single-query result.
    query = "SELECT open_time FROM candles WHERE open_time >= $1 AND open_time < $2"
    middle = start + timedelta(minutes=n // 2)
    end = start + timedelta(minutes=n)
    halves = read_frames_consistent(
        clean_database, [(query, [start, middle]), (query, [middle, end])]
    )
    assert [h.height for h in halves] == [n // 2, n - n // 2]
