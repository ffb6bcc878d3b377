"""The numpy-built binary COPY (pg_binary.encode_copy) stores exactly what ADBC's COPY stores.

Every supported type, NULLs, NaN/±inf/-0.0, empty and non-ASCII text, extreme timestamps and
dates are written once through the binary path and once through ADBC into identical tables;
both are read back and must be equal, and equal to the frame written.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from goldrl_dagster.lib.market.candles import CANDLE_KEY, conform_candles
from goldrl_dagster.lib.storage import bulk, pg_binary
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame

T0 = datetime(2025, 1, 1, tzinfo=UTC)
_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS {name} (
    id bigint PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, b boolean,
    tz timestamptz, ts timestamp, d date, t text, v varchar(40)
)
"""


def _every_type_frame() -> pl.DataFrame:
    n = 7
    return pl.DataFrame(
        {
            "id": list(range(n)),
            "i2": [1, None, -32768, 32767, 0, 5, None],
            "i4": [1, -(2**31), 2**31 - 1, None, 0, 7, 8],
            "i8": [None, -(2**63), 2**63 - 1, 0, 1, 2, 3],
            "f4": [1.5, None, float("inf"), -0.0, 3.25, float("nan"), 0.0],
            "f8": [math.pi, float("nan"), float("-inf"), -0.0, None, 1e308, 5e-324],
            "b": [True, False, None, True, False, True, None],
            "tz": [
                T0,
                datetime(1970, 1, 1, tzinfo=UTC),
                datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                None,
                datetime(1, 1, 1, tzinfo=UTC),
                datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                T0 + timedelta(microseconds=1),
            ],
            "ts": [datetime(2000, 1, 1), None, datetime(1960, 6, 1, 12), datetime(2100, 1, 1)]
            + [datetime(2024, 2, 29, 1, 2, 3, 4)] * 3,
            "d": [date(2000, 1, 1), date(1900, 3, 1), None, date(2099, 12, 31)] * 1
            + [date(1970, 1, 1), date(1999, 12, 31), date(2000, 1, 2)],
            "t": ["", None, "gold ✓ 金", "a" * 300, "x", "tab\tnew\nline", "'quote'"],
            "v": ["short", "éèê", None, "", "v", "w", "z"],
        },
        schema={
            "id": pl.Int64,
            "i2": pl.Int16,
            "i4": pl.Int32,
            "i8": pl.Int64,
            "f4": pl.Float32,
            "f8": pl.Float64,
            "b": pl.Boolean,
            "tz": pl.Datetime("us", "UTC"),
            "ts": pl.Datetime("us"),
            "d": pl.Date,
            "t": pl.String,
            "v": pl.String,
        },
    )


def _create(db, name: str) -> None:
    with db.connect() as conn:
        conn.execute(_TABLE_SQL.format(name=name))
        conn.execute(f"TRUNCATE {name}")
        conn.commit()


def _stored(db, name: str) -> pl.DataFrame:
    return read_frame(db, f"SELECT * FROM {name} ORDER BY id")


def _write_with_adbc(db, table: str, frame: pl.DataFrame) -> None:
    with bulk.arrow_connection(db) as conn:
        bulk._upsert(bulk._ArrowSession(conn), table, frame, ["id"], update=True)


def test_every_supported_type_is_stored_as_adbc_stores_it(clean_database):
    db = clean_database
    _create(db, "binary_copy_types")
    _create(db, "adbc_copy_types")
    frame = _every_type_frame()
    with db.connect() as conn:
        types = bulk._column_types(conn, "binary_copy_types")
    assert pg_binary.copy_plan(frame.schema, types) is not None  # the binary path is taken
    upsert_frame(db, "binary_copy_types", frame, ["id"])
    _write_with_adbc(db, "adbc_copy_types", frame)
    binary, adbc = _stored(db, "binary_copy_types"), _stored(db, "adbc_copy_types")
    assert binary.equals(adbc)
    assert binary.select(frame.columns).equals(frame)


def test_the_staging_merge_path_uses_the_same_encoding(clean_database):
    db = clean_database
    _create(db, "binary_copy_types")
    frame = _every_type_frame()
    upsert_frame(db, "binary_copy_types", frame.head(3), ["id"])
    changed = frame.with_columns(pl.col("t").fill_null("was null"))
    upsert_frame(db, "binary_copy_types", changed, ["id"])  # overlaps: read-back + merge
    assert _stored(db, "binary_copy_types").select(frame.columns).equals(changed)


def test_mixed_length_text_and_chunk_boundaries_round_trip(clean_database):
    db = clean_database
    n = 40_000  # more than one 16,384-row chunk
    sources = ["bingx_rest", "simulator"]
    frame = conform_candles(
        pl.DataFrame(
            {
                "instrument": ["XAUT-USDT"] * n,
                "interval": ["1m"] * n,
                "open_time": [T0 + timedelta(minutes=i) for i in range(n)],
                "open": [float(i) for i in range(n)],
                "high": [float(i) + 1 for i in range(n)],
                "low": [float(i) - 1 for i in range(n)],
                "close": [float(i) + 0.5 for i in range(n)],
                "volume": [float(i % 13) for i in range(n)],
                "source": [sources[(i // 7) % 2] for i in range(n)],
            }
        )
    )
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    stored = read_frame(db, f"SELECT {', '.join(frame.columns)} FROM candles ORDER BY open_time")
    assert stored.equals(frame)


@pytest.mark.parametrize(
    ("schema", "target"),
    [
        ({"x": pl.Int64}, {"x": "integer"}),  # width differs from the column's: refused
        ({"x": pl.Float64}, {"x": "numeric"}),
        ({"x": pl.String}, {"x": "jsonb"}),
        ({"x": pl.Datetime("us")}, {"x": "timestamp with time zone"}),
        ({"x": pl.Datetime("ns", "UTC")}, {"x": "timestamp with time zone"}),
        ({"x": pl.List(pl.Int64)}, {"x": "bigint[]"}),
        ({"x": pl.Int64}, {}),
    ],
)
def test_types_without_an_exact_encoding_fall_back_to_adbc(schema, target):
    assert pg_binary.copy_plan(schema, target) is None


def test_unsorted_duplicate_keys_are_still_refused(clean_database):
    frame = _every_type_frame()
    duplicated = pl.concat([frame.slice(3, 1), frame]).with_columns(pl.col("id").reverse())
    with pytest.raises(ValueError, match="duplicate keys"):
        upsert_frame(clean_database, "candles", duplicated.rename({"id": "x"}), ["x"])
    assert bulk._has_duplicate_keys(pl.DataFrame({"a": [3, 1, 3]}), ["a"])
    assert bulk._has_duplicate_keys(pl.DataFrame({"a": [1, None, None]}), ["a"])
    assert not bulk._has_duplicate_keys(pl.DataFrame({"a": [1, 1, 2], "b": [2, 3, 1]}), ["a", "b"])
