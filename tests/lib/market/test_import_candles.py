"""Importing candle files: real PAXG history, synthetic bad files, all-or-nothing writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from goldrl_dagster.lib.bingx.errors import UnknownSymbolError
from goldrl_dagster.lib.market.importer import (
    CandleImportError,
    import_candles,
    parse_candle_file,
)
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.market_store import read_candles, write_candles

REAL = Path(__file__).resolve().parents[3].parent / "shared/data/real"
PERP_5M = REAL / "paxgusdt-perp_m5_binance-futures_2025.csv"
PERP_15M = REAL / "paxgusdt-perp_m15_binance-futures_2025.csv"
SPOT_1M = REAL / "paxgusdt_m1_binance-spot_2026-03.csv"
needs_real = pytest.mark.skipif(not PERP_5M.exists(), reason="real PAXG data not present")
HEADER = "ts,open,high,low,close,volume\n"
T0 = datetime(2025, 3, 8, tzinfo=UTC)


def _csv(tmp_path: Path, rows: list[str], name: str = "c.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def _good_rows(n: int, step_min: int = 5) -> list[str]:
    out = []
    for i in range(n):
        ts = (T0 + timedelta(minutes=step_min * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        price = 3000.0 + i
        out.append(f"{ts},{price},{price + 2},{price - 1},{price + 1},{i % 4}")
    return out


def _count(db, instrument: str = "PAXG-USDT", interval: str = "5m") -> int:
    frame = read_frame(
        db,
        "SELECT count(*) AS n FROM candles WHERE instrument = $1 AND interval = $2",
        [instrument, interval],
    )
    return int(frame["n"][0])


@needs_real
def test_real_5m_perp_file_imports_with_wicks_flagged(clean_database, tmp_path):
    db = clean_database
    summary = import_candles(db, PERP_5M, "PAXGUSDT", "5m")
    expected_rows = sum(1 for _ in PERP_5M.open()) - 1
    assert summary.instrument == "PAXG-USDT"
    assert summary.rows == summary.written == summary.inserted == expected_rows
    assert (summary.changed, summary.unchanged) == (0, 0)
    assert summary.first_open_time == datetime(2025, 7, 4, 11, 50, tzinfo=UTC)
    assert summary.last_open_time == datetime(2025, 12, 31, 11, 45, tzinfo=UTC)
    assert summary.gaps == ()
    flagged = {o.open_time for o in summary.outliers}
    assert {"2025-10-10T21:20:00+00:00", "2025-10-16T22:10:00+00:00"} <= flagged
    stored = read_candles(
        db, "PAXG-USDT", "5m", summary.first_open_time, summary.last_open_time + timedelta(1)
    )
    assert stored.height == expected_rows
    assert set(stored["source"]) == {"import"}
    # The wick bar is stored exactly as in the file, not clipped.
    wick = stored.filter(pl.col("open_time") == datetime(2025, 10, 10, 21, 20, tzinfo=UTC))
    assert (wick["high"][0], wick["low"][0]) == (4352.72, 3087.0)
    # Re-importing is idempotent: nothing inserted or changed, every row reported unchanged.
    again = import_candles(db, PERP_5M, "PAXG-USDT", "5m")
    assert (again.inserted, again.changed, again.unchanged) == (0, 0, expected_rows)
    assert again.written == 0
    assert _count(db) == expected_rows


@needs_real
def test_real_15m_listing_bar_and_1m_spot_validate(tmp_path):
    frame, summary = parse_candle_file(PERP_15M, "paxg-usdt", "15m")
    assert summary.rows == frame.height == sum(1 for _ in PERP_15M.open()) - 1
    assert frame["open_time"][0] == datetime(2025, 3, 27, 10, 30, tzinfo=UTC)
    assert summary.outlier_count >= 2
    frame, summary = parse_candle_file(SPOT_1M, "PAXGUSDT", "1m")
    assert summary.rows == sum(1 for _ in SPOT_1M.open()) - 1
    assert summary.gaps == ()


def test_bad_rows_are_all_reported_by_line_and_nothing_is_written(clean_database, tmp_path):
    db = clean_database
    rows = _good_rows(20)
    rows[2] = rows[2].replace(",3002.0,3004.0,", ",3002.0,2990.0,")  # line 4: high below open
    rows[5] = "not-a-time,1,2,0.5,1,1"  # line 7
    rows[8] = rows[8].rsplit(",", 1)[0] + ",-3"  # line 10: negative volume
    rows[11] = rows[11].replace(",3011.0,", ",abc,", 1)  # line 13: open not a number
    rows[14] = rows[13]  # line 16 duplicates line 15
    rows[17] = rows[17].replace("T01:25", "T01:26")  # line 19: off the 5m grid
    path = _csv(tmp_path, rows)
    before = _count(db)
    with pytest.raises(CandleImportError) as info:
        import_candles(db, path, "PAXG-USDT", "5m")
    lines = sorted({e.line for e in info.value.errors})
    assert lines == [4, 7, 10, 13, 16, 19]
    text = str(info.value)
    assert "line 4 [high]" in text and "duplicate open time (first on line 15)" in text
    assert "nothing was written" in text
    assert _count(db) == before == 0


def test_out_of_order_and_epoch_seconds_are_rejected(tmp_path):
    rows = _good_rows(6)
    rows[3], rows[4] = rows[4], rows[3]
    with pytest.raises(CandleImportError, match=r"line 6 \[ts\]: out of order"):
        parse_candle_file(_csv(tmp_path, rows), "PAXG-USDT", "5m")
    seconds = [f"{int(T0.timestamp()) + 300 * i},1,2,0.5,1,1" for i in range(3)]
    with pytest.raises(CandleImportError, match="looks like epoch seconds"):
        parse_candle_file(_csv(tmp_path, seconds, "s.csv"), "PAXG-USDT", "5m")


def test_error_list_is_capped_but_counted(tmp_path):
    rows = [f"x{i},1,2,0.5,1,1" for i in range(250)]
    with pytest.raises(CandleImportError) as info:
        parse_candle_file(_csv(tmp_path, rows), "PAXG-USDT", "5m")
    assert info.value.total == 250
    assert len(info.value.errors) == 100
    assert "and 150 more" in str(info.value)


def test_epoch_ms_and_parquet_and_holes(clean_database, tmp_path):
    db = clean_database
    ms = [int((T0 + timedelta(minutes=5 * i)).timestamp() * 1000) for i in range(10)]
    del ms[4:6]  # two missing bars: a gap, reported, not an error
    frame = pl.DataFrame(
        {
            "ts": ms,
            "open": [10.0] * 8,
            "high": [11.0] * 8,
            "low": [9.0] * 8,
            "close": [10.5] * 8,
            "volume": [1.0] * 8,
        }
    )
    path = tmp_path / "bars.parquet"
    frame.write_parquet(path)
    summary = import_candles(db, path, "Gold-USDT", "5m")
    assert summary.instrument == "XAUT-USDT"
    assert summary.rows == summary.written == 8
    ((gap),) = summary.gaps
    assert (gap.start, gap.missing_bars) == (T0 + timedelta(minutes=20), 2)
    csv_ms = _csv(tmp_path, [f"{m},10,11,9,10.5,1" for m in ms], "ms.csv")
    _, again = parse_candle_file(csv_ms, "XAUTUSDT", "5m")
    assert again.rows == 8 and again.first_open_time == T0


def test_exchange_bars_are_kept_and_dry_run_writes_nothing(clean_database, tmp_path):
    db = clean_database
    path = _csv(tmp_path, _good_rows(10))
    exchange = read_candles(db, "PAXG-USDT", "5m", T0, T0)  # empty canonical frame
    exchange = pl.DataFrame(
        {
            "instrument": ["PAXG-USDT"],
            "interval": ["5m"],
            "open_time": [T0 + timedelta(minutes=10)],
            "open": [1.0],
            "high": [1.0],
            "low": [1.0],
            "close": [1.0],
            "volume": [1.0],
            "source": ["bingx_rest"],
        },
        schema=exchange.schema,
    )
    write_candles(db, exchange)
    dry = import_candles(db, path, "PAXG-USDT", "5m", dry_run=True)
    assert dry.dry_run and dry.written == 0 and _count(db) == 1
    summary = import_candles(db, path, "PAXG-USDT", "5m")
    assert (summary.written, summary.kept_existing) == (9, 1)
    stored = read_candles(db, "PAXG-USDT", "5m", T0, T0 + timedelta(hours=1))
    kept = stored.filter(pl.col("open_time") == T0 + timedelta(minutes=10))
    assert kept["source"][0] == "bingx_rest"


@pytest.mark.parametrize(
    ("content", "instrument", "interval", "error", "match"),
    [
        ("ts,open,high\n1,2,3\n", "PAXG-USDT", "5m", CandleImportError, "missing column"),
        (HEADER, "PAXG-USDT", "5m", CandleImportError, "no data rows"),
        (
            HEADER + "2025-03-08T00:00:00Z,1,2,0.5,1,1\n",
            "DOGE-USDT",
            "5m",
            UnknownSymbolError,
            "unknown symbol",
        ),
        (
            HEADER + "2025-03-08T00:00:00Z,1,2,0.5,1,1\n",
            "PAXG-USDT",
            "7m",
            ValueError,
            "unknown interval",
        ),
    ],
)
def test_file_level_problems_are_clear(tmp_path, content, instrument, interval, error, match):
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(error, match=match):
        parse_candle_file(path, instrument, interval)


def test_unsupported_or_missing_file(tmp_path):
    with pytest.raises(CandleImportError, match="file not found"):
        parse_candle_file(tmp_path / "nope.csv", "PAXG-USDT", "5m")
    other = tmp_path / "x.xlsx"
    other.write_text("x")
    with pytest.raises(CandleImportError, match="unsupported file type"):
        parse_candle_file(other, "PAXG-USDT", "5m")


def test_cli_dry_run_summary_and_rejection_exit_code(tmp_path):
    from typer.testing import CliRunner

    from goldrl_dagster.cli import app

    runner = CliRunner()
    good = _csv(tmp_path, _good_rows(12), "good.csv")
    result = runner.invoke(
        app, ["import-candles", str(good), "--instrument", "PAXGUSDT", "--interval", "5m",
              "--dry-run"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "12 rows of PAXG-USDT 5m, 2025-03-08 00:00 .. 2025-03-08 00:55 UTC" in result.output
    assert "dry run: nothing written" in result.output
    bad_rows = _good_rows(3)
    bad_rows[1] = bad_rows[1].replace(",3001.0,3003.0,", ",3001.0,-3003.0,")
    bad = _csv(tmp_path, bad_rows, "bad.csv")
    result = runner.invoke(
        app, ["import-candles", str(bad), "--instrument", "PAXGUSDT", "--interval", "5m"]
    )
    assert result.exit_code == 1
    assert "line 3 [high]" in result.output and "nothing was written" in result.output
    result = runner.invoke(
        app, ["import-candles", str(good), "--instrument", "DOGE", "--interval", "5m"]
    )
    assert result.exit_code == 2 and "unknown symbol" in result.output


def test_cli_writes_into_the_database(clean_database, tmp_path):
    from typer.testing import CliRunner

    from goldrl_dagster.cli import app

    rows = _good_rows(12)
    good = _csv(tmp_path, rows, "good.csv")
    args = ["--instrument", "PAXG-USDT", "--interval", "5m"]
    result = CliRunner().invoke(app, ["market", "import", str(good), *args])
    assert result.exit_code == 0, result.output
    assert "inserted: 12, changed: 0, unchanged: 0 (source import)" in result.output
    assert _count(clean_database) == 12
    # A corrected file (one close changed, two bars added) through the old command name.
    rows[3] = rows[3].replace(",3004.0,3", ",3003.5,3")
    more = _csv(tmp_path, rows + _good_rows(14)[12:], "more.csv")
    result = CliRunner().invoke(app, ["import-candles", str(more), *args])
    assert result.exit_code == 0, result.output
    assert "inserted: 2, changed: 1, unchanged: 11 (source import)" in result.output
    assert _count(clean_database) == 14
