"""Importing public-shaped vendor files: time zones, MT5 layout, spacing, quoting, re-imports."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from goldrl_dagster.lib.market.closures import parse_closures
from goldrl_dagster.lib.market.importer import (
    CandleImportError,
    detect_spacing,
    import_candles,
    parse_candle_file,
)
from goldrl_dagster.lib.storage.bulk import read_frame
from tests.support.vendor_files import spot_gold_history, write_vendor_file

NY = "America/New_York"


@pytest.fixture(scope="module")
def gold_1m():
    return spot_gold_history()


@pytest.fixture(scope="module")
def gold_5m():
    return spot_gold_history(interval_minutes=5)


def _bars(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("open_time", "open", "high", "low", "close", "volume")


def _stored(db) -> pl.DataFrame:
    return read_frame(
        db,
        "SELECT instrument, interval, open_time, open, high, low, close, volume, source "
        "FROM candles ORDER BY instrument, interval, open_time",
    )


@pytest.mark.parametrize(
    ("layout", "timestamps", "zone", "given"),
    [
        ("normal", "aware", "UTC", None),
        ("normal", "aware", NY, None),  # ISO with -04:00 / -05:00 offsets
        ("normal", "epoch", "UTC", None),
        ("normal", "naive", NY, NY),
        ("mt5", "naive", "Europe/Athens", "Europe/Athens"),
    ],
)
def test_every_variant_reads_back_the_true_bars(tmp_path, gold_1m, layout, timestamps, zone, given):
    path = write_vendor_file(
        gold_1m, tmp_path / "gold.csv", layout=layout, timestamps=timestamps, timezone=zone
    )
    closures = parse_closures(gold_1m.closures())
    frame, summary = parse_candle_file(path, "XAUT-USDT", "1m", timezone=given, closures=closures)
    assert _bars(frame).equals(gold_1m.bars)
    assert summary.timezone == given
    # Weekends, daily breaks (moving with DST on 2 November) and the early close are excused:
    # what is left are the real holes.
    hole_start, hole_end = gold_1m.multi_hour_hole
    expected = [(hole_start, (hole_end - hole_start) // timedelta(minutes=1))]
    expected += [(t, 1) for t in gold_1m.single_gaps]
    assert sorted((g.start, g.missing_bars) for g in summary.gaps) == sorted(expected)
    flagged = {o.open_time for o in summary.outliers}
    assert gold_1m.wick_bar.isoformat() in flagged


@pytest.mark.parametrize("layout", ["normal", "mt5"])
def test_naive_times_without_a_zone_are_refused_with_the_fix(tmp_path, gold_1m, layout):
    path = write_vendor_file(
        gold_1m, tmp_path / "gold.csv", layout=layout, timestamps="naive", timezone="Europe/Athens"
    )
    with pytest.raises(CandleImportError) as info:
        parse_candle_file(path, "XAUT-USDT", "1m")
    text = str(info.value)
    assert "line 2 [ts]" in text
    assert f"{gold_1m.bars.height} open time(s) have no UTC offset" in text
    assert "not assumed to be UTC" in text and "--timezone" in text
    # Read in the wrong zone the bars shift by the zone's offset: not silently UTC.
    frame, _ = parse_candle_file(path, "XAUT-USDT", "1m", timezone="UTC")
    shift = frame["open_time"][0] - gold_1m.bars["open_time"][0]
    assert shift == timedelta(hours=2)  # Athens is UTC+2 in late October after its switch


def test_unknown_time_zone_is_a_clear_error(tmp_path, gold_1m):
    path = write_vendor_file(gold_1m.bars.head(5), tmp_path / "g.csv")
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Atlantis'; expected an IANA"):
        parse_candle_file(path, "XAUT-USDT", "1m", timezone="Europe/Atlantis")


def _around(local_start: datetime, minutes: int, zone: str) -> pl.DataFrame:
    """24/7 one-minute bars for ``minutes`` minutes from a UTC instant."""
    times = [local_start + timedelta(minutes=i) for i in range(minutes)]
    return pl.DataFrame(
        {
            "open_time": times,
            "open": [100.0] * minutes,
            "high": [101.0] * minutes,
            "low": [99.0] * minutes,
            "close": [100.5] * minutes,
            "volume": [1.0] * minutes,
        },
        schema={"open_time": pl.Datetime("us", "UTC")}
        | dict.fromkeys(("open", "high", "low", "close", "volume"), pl.Float64),
    )


def test_repeated_local_hour_is_resolved_by_file_order(tmp_path):
    # New York falls back at 02:00 EDT on 2 Nov 2025 (06:00 UTC): 01:00-01:59 occurs twice.
    bars = _around(datetime(2025, 11, 2, 4, 30, tzinfo=UTC), 240, NY)
    path = write_vendor_file(bars, tmp_path / "fold.csv", timestamps="naive", timezone=NY)
    lines = path.read_text().splitlines()
    assert lines[32].startswith("2025-11-02 01:01") and lines[92].startswith("2025-11-02 01:01")
    frame, _ = parse_candle_file(path, "PAXG-USDT", "1m", timezone=NY)
    assert frame["open_time"].equals(bars["open_time"])


def test_ambiguous_or_skipped_local_times_are_refused_by_line(tmp_path):
    # The vendor dropped the second 01:00-01:59: which offset is meant cannot be known.
    bars = _around(datetime(2025, 11, 2, 4, 30, tzinfo=UTC), 240, NY)
    single = bars.filter(
        (pl.col("open_time") < datetime(2025, 11, 2, 6, tzinfo=UTC))
        | (pl.col("open_time") >= datetime(2025, 11, 2, 7, tzinfo=UTC))
    )
    path = write_vendor_file(single, tmp_path / "once.csv", timestamps="naive", timezone=NY)
    with pytest.raises(CandleImportError) as info:
        parse_candle_file(path, "PAXG-USDT", "1m", timezone=NY)
    assert info.value.total == 60
    assert info.value.errors[0].line == 32  # header, 00:30 .. 00:59, then 01:00 on line 32
    assert "occurs twice in America/New_York" in str(info.value)
    # Spring forward on 9 Mar 2025: 02:00-02:59 does not exist in New York.
    text = "ts,open,high,low,close,volume\n"
    text += "".join(
        f"2025-03-09 {h:02d}:{m:02d}:00,1,2,0.5,1,1\n" for h in (1, 2, 3) for m in range(60)
    )
    path = tmp_path / "spring.csv"
    path.write_text(text)
    with pytest.raises(CandleImportError) as info:
        parse_candle_file(path, "PAXG-USDT", "1m", timezone=NY)
    assert info.value.total == 60 and info.value.errors[0].line == 62
    assert "does not exist in America/New_York (the clocks skipped it)" in str(info.value)


def test_spacing_mismatch_is_refused_before_anything_is_written(
    clean_database, tmp_path, gold_1m, gold_5m
):
    db = clean_database
    first = import_candles(db, write_vendor_file(gold_1m, tmp_path / "one.csv"), "XAUTUSDT", "1m")
    assert first.inserted == gold_1m.bars.height
    before = _stored(db)
    five = write_vendor_file(gold_5m, tmp_path / "five.csv")
    # Every 5m open time is also on the 1m grid: only the spacing shows the mistake.
    with pytest.raises(CandleImportError) as info:
        import_candles(db, five, "XAUT-USDT", "1m")
    text = str(info.value)
    assert "the bars are 5m apart" in text and "interval given is 1m" in text
    assert "pass --interval 5m" in text and "nothing was written" in text
    assert _stored(db).equals(before)
    with pytest.raises(CandleImportError, match="the bars are 1m apart"):
        import_candles(db, write_vendor_file(gold_1m, tmp_path / "o.csv"), "XAUT-USDT", "5m")
    assert _stored(db).equals(before)
    # Labelled right, the same file goes in beside the 1m bars.
    summary = import_candles(db, five, "XAUT-USDT", "5m")
    assert summary.inserted == gold_5m.bars.height


def test_spacing_is_the_dominant_step():
    minute = 60_000
    times = pl.Series([0, 1, 2, 3, 10, 11, 12, 100, 105], dtype=pl.Int64) * minute
    assert detect_spacing(times) == (minute, 5, 8)
    assert detect_spacing(pl.Series([5 * minute], dtype=pl.Int64)) is None


def test_reimport_reports_inserted_changed_unchanged(clean_database, tmp_path, gold_5m):
    db = clean_database
    path = write_vendor_file(gold_5m, tmp_path / "gold.csv", timestamps="naive", timezone=NY)
    n = gold_5m.bars.height
    first = import_candles(db, path, "XAUT-USDT", "5m", timezone=NY)
    assert (first.inserted, first.changed, first.unchanged, first.written) == (n, 0, 0, n)
    again = import_candles(db, path, "XAUT-USDT", "5m", timezone=NY)
    assert (again.inserted, again.changed, again.unchanged, again.written) == (0, 0, n, 0)
    # A vendor correction: three closes revised, the last ten bars not yet published.
    revised = (
        gold_5m.bars.head(n - 10)
        .with_columns(
            pl.when(pl.int_range(pl.len()).is_in([5, 50, 500]))
            .then(pl.col("close") + 0.01)
            .otherwise(pl.col("close"))
            .alias("close")
        )
        .with_columns(pl.max_horizontal("high", "close").alias("high"))
    )
    path = write_vendor_file(revised, tmp_path / "rev.csv")
    dry = import_candles(db, path, "XAUT-USDT", "5m", dry_run=True)
    assert (dry.inserted, dry.changed, dry.unchanged, dry.written) == (0, 3, n - 13, 0)
    done = import_candles(db, path, "XAUT-USDT", "5m")
    assert (done.inserted, done.changed, done.unchanged, done.written) == (0, 3, n - 13, 3)
    stored = _stored(db).filter(pl.col("interval") == "5m")
    assert stored.height == n  # the ten bars the file no longer has are kept
    assert stored["close"].head(n - 10).equals(revised["close"])


def test_ragged_line_is_named_in_plain_words(tmp_path, gold_1m):
    path = write_vendor_file(gold_1m.bars.head(50), tmp_path / "ragged.csv")
    lines = path.read_text().splitlines()
    lines[37] += ",9.5"  # line 38 has an extra field
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CandleImportError) as info:
        parse_candle_file(path, "XAUT-USDT", "1m")
    text = str(info.value)
    assert "line 38: 7 fields where the header has 6" in text
    assert "truncate_ragged_lines" not in text and "line 0" not in text


@pytest.mark.parametrize("column", ["ts", "close"])
def test_a_huge_field_is_quoted_cut_and_never_copied(tmp_path, gold_1m, column):
    size = 30_000_000
    bars = gold_1m.bars.head(20)
    path = write_vendor_file(bars, tmp_path / "huge.csv")
    lines = path.read_text().splitlines()
    fields = lines[5].split(",")
    fields[0 if column == "ts" else 4] = "9" * 10 + "x" * size
    lines[5] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(CandleImportError) as info:
            parse_candle_file(path, "XAUT-USDT", "1m")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = str(info.value)
    assert len(text) < 1_000
    assert f"line 6 [{column}]" in text
    assert f"… ({size + 10 - 80} more characters)" in text
    # No Python copy of the field was made while building the report (polars holds it).
    assert peak < size // 4


def test_import_path_does_not_call_great_expectations(tmp_path, gold_1m):
    # The importer's own checks are the candle suite's rules: what it accepts, GX passes.
    from expectations.candles import validate_candles

    path = write_vendor_file(gold_1m, tmp_path / "gold.csv")
    frame, _ = parse_candle_file(path, "XAUT-USDT", "1m")
    result = validate_candles(frame, interval_ms=60_000, closures=parse_closures(
        gold_1m.closures()))  # fmt: skip
    problems = [f for f in result.failures if f.column != "gap_ms"]
    assert problems == []
    # The early close and the multi-hour hole are gaps the suite reports, as the importer does.
    assert {f.column for f in result.failures} == {"gap_ms"}


def test_cli_timezone_option_and_refusal(tmp_path, gold_5m):
    from typer.testing import CliRunner

    from goldrl_dagster.cli import app

    path = write_vendor_file(gold_5m, tmp_path / "mt5.csv", layout="mt5", timezone="Europe/Athens")
    args = ["market", "import", str(path), "--instrument", "XAUTUSDT", "--interval", "5m"]
    args.append("--dry-run")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1
    assert "no UTC offset" in refused.output and "--timezone" in refused.output
    ok = CliRunner().invoke(app, [*args, "--timezone", "Europe/Athens"])
    assert ok.exit_code == 0, ok.output
    assert "times without offset read as Europe/Athens" in ok.output
    first = gold_5m.bars["open_time"][0]
    assert f"{gold_5m.bars.height} rows of XAUT-USDT 5m, {first:%Y-%m-%d %H:%M}" in ok.output
    bad = CliRunner().invoke(app, [*args, "--timezone", "Athens"])
    assert bad.exit_code == 2 and "unknown time zone 'Athens'" in bad.output


def test_generator_is_deterministic(tmp_path):
    a = write_vendor_file(spot_gold_history(seed=3), tmp_path / "a.csv", layout="mt5")
    b = write_vendor_file(spot_gold_history(seed=3), tmp_path / "b.csv", layout="mt5")
    c = write_vendor_file(spot_gold_history(seed=4), tmp_path / "c.csv", layout="mt5")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    history = spot_gold_history(start=date(2025, 3, 3), seed=3)
    assert len(history.flat_bars) >= 19 and history.single_gaps


def test_parquet_with_naive_datetimes_needs_a_zone_too(tmp_path, gold_5m):
    local = gold_5m.bars.with_columns(
        pl.col("open_time").dt.convert_time_zone(NY).dt.replace_time_zone(None).alias("ts")
    ).drop("open_time")
    path = tmp_path / "naive.parquet"
    local.write_parquet(path)
    with pytest.raises(CandleImportError, match=r"line 1 \[ts\]: 2\d+ open time\(s\) have no UTC"):
        parse_candle_file(path, "XAUT-USDT", "5m")
    frame, summary = parse_candle_file(path, "XAUT-USDT", "5m", timezone=NY)
    assert _bars(frame).equals(gold_5m.bars) and summary.timezone == NY
