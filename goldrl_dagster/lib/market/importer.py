"""Import candle history from a CSV or Parquet file (another venue's or a vendor's export).

The file has columns ``ts,open,high,low,close,volume`` (extra columns are ignored); ``ts`` is
the bar open time as ISO-8601 (UTC; a time without offset is read as UTC) or epoch
milliseconds. Every row is parsed and checked (numbers, positive prices, non-negative volume,
OHLC consistency, open time on the interval's grid, no duplicate or out-of-order times) and
the parsed frame then runs through the same Great Expectations candle suite as exchange data.
Any failure rejects the whole file with the line numbers of the offending rows and nothing is
written; a valid file is upserted in one transaction with ``source = import``.

Missing bars inside the file (e.g. a vendor's weekend close) are not errors: they are reported
as gaps, excused where a venue closure is configured, and healed or flagged like any other gap.
Large moves are reported as return outliers, never rejected: a crypto-only wick on a gold
token is real data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from expectations.candles import GAP_COLUMN, validate_candles
from expectations.outliers import ReturnOutlier, validate_returns
from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.market.candles import CANDLE_KEY, INTERVAL_MS, conform_candles
from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar
from goldrl_dagster.lib.market.gaps import Gap, find_gaps
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame
from goldrl_dagster.lib.storage.server import Database

REQUIRED_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
SOURCE = "import"
# Enough errors to see the pattern of a bad file; the total is always reported.
MAX_LISTED_ERRORS = 100
# Rows validated per progress step.
CHUNK_ROWS = 200_000
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
# Timestamps below this many ms (1973) are almost certainly epoch seconds.
_MIN_EPOCH_MS = 100_000_000_000
_WEEK_MS = 7 * 86_400_000
_MONDAY_OFFSET_MS = 4 * 86_400_000  # 1970-01-05, the first Monday after the epoch

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RowError:
    """One problem in the file.

    Attributes:
        line: Line number in a CSV file (header = line 1) or row number in a Parquet file.
        column: Column concerned, if one.
        message: What is wrong.
    """

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f" [{self.column}]" if self.column else ""
        return f"line {self.line}{where}: {self.message}"


class CandleImportError(ValueError):
    """The file was rejected; nothing was written.

    Attributes:
        path: The file.
        errors: The problems found, by line (at most ``MAX_LISTED_ERRORS``).
        total: How many problems were found in all.
    """

    def __init__(self, path: Path, errors: list[RowError], total: int | None = None) -> None:
        self.path = path
        self.errors = sorted(errors, key=lambda e: (e.line, e.column or ""))[:MAX_LISTED_ERRORS]
        self.total = len(errors) if total is None else total
        listed = "\n".join(f"  {e}" for e in self.errors)
        more = self.total - len(self.errors)
        tail = f"\n  … and {more} more" if more > 0 else ""
        super().__init__(
            f"{path}: rejected, {self.total} problem(s); nothing was written\n{listed}{tail}"
        )


@dataclass(frozen=True)
class ImportSummary:
    """What an import read and wrote.

    Attributes:
        path: The file.
        instrument: Resolved exchange symbol.
        interval: Bar interval.
        rows: Valid rows in the file.
        first_open_time: Earliest bar.
        last_open_time: Latest bar.
        gaps: Missing bars inside the file's range (not excused by a closure).
        outliers: Return outliers found (listed up to a cap; see ``outlier_count``).
        outlier_count: Number of return outliers.
        written: Rows upserted (0 for a dry run).
        kept_existing: Rows not written because exchange data for the same bar is stored.
        dry_run: True when nothing was written by request.
    """

    path: Path
    instrument: str
    interval: str
    rows: int
    first_open_time: datetime
    last_open_time: datetime
    gaps: tuple[Gap, ...]
    outliers: tuple[ReturnOutlier, ...]
    outlier_count: int
    written: int
    kept_existing: int
    dry_run: bool


def _noop(stage: str, done: int, total: int) -> None:
    return None


def _read(path: Path) -> tuple[pl.DataFrame, int]:
    """Read the file; return the frame and the line number of its first data row."""
    if not path.is_file():
        raise CandleImportError(path, [RowError(0, None, "file not found")])
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path), 1
        if suffix in (".csv", ".txt"):
            # Everything as text: parse errors must name the line, not abort the read.
            return pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False), 2
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CandleImportError(path, [RowError(0, None, f"unreadable file: {exc}")]) from exc
    raise CandleImportError(
        path, [RowError(0, None, f"unsupported file type {suffix!r}; use .csv or .parquet")]
    )


def _parse_times(ts: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Return (open time as epoch ms or null, reason for each null)."""
    if isinstance(ts.dtype, pl.Datetime):
        zoned = ts if ts.dtype.time_zone else ts.dt.replace_time_zone("UTC")
        ms = zoned.dt.epoch("ms")
        reason = pl.Series(["missing open time"] * ms.len(), dtype=pl.String)
        return ms, reason.zip_with(ms.is_null(), pl.Series([None] * ms.len(), dtype=pl.String))
    text = ts.cast(pl.String).str.strip_chars()
    # Fast, vectorised paths for the usual spellings; only the rest is parsed row by row.
    epoch = text.str.extract(r"^(-?\d+)$").cast(pl.Int64, strict=False)
    iso = text.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%.f%#z", strict=False)
    ms = epoch.fill_null(iso.dt.epoch("ms"))
    values = ms.to_list()
    reasons: list[str | None] = [None] * len(values)
    small = (epoch.abs() < _MIN_EPOCH_MS).fill_null(False)
    for i in (ms.is_null() | small).arg_true().to_list():
        raw = text[i]
        values[i] = None
        if raw is None or raw == "":
            reasons[i] = "missing open time"
        elif small[i]:
            reasons[i] = f"{raw} looks like epoch seconds; expected epoch milliseconds"
        else:
            try:
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                reasons[i] = f"{raw!r} is neither ISO-8601 nor epoch milliseconds"
                continue
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            values[i] = int(moment.timestamp() * 1000)
    return pl.Series(values, dtype=pl.Int64), pl.Series(reasons, dtype=pl.String)


def _suspect_rows(parsed: pl.DataFrame, interval: str, now_ms: int) -> pl.DataFrame:
    """Rows that may hold a problem (a cheap vectorised filter before the row-wise report)."""
    step = INTERVAL_MS[interval]
    ms = pl.col("ms")
    bad_time = (
        pl.col("ms_error").is_not_null() | (ms < int(_EARLIEST.timestamp() * 1000)) | (ms > now_ms)
    )
    if interval == "1w":
        bad_time = bad_time | ((ms - _MONDAY_OFFSET_MS) % _WEEK_MS != 0)
    elif interval != "3d":
        bad_time = bad_time | (ms % step != 0)
    numbers = (*PRICE_COLUMNS, "volume")
    bad_number = pl.any_horizontal([pl.col(c).is_null() | ~pl.col(c).is_finite() for c in numbers])
    bad_value = pl.any_horizontal([pl.col(c) <= 0 for c in PRICE_COLUMNS]) | (pl.col("volume") < 0)
    bad_ohlc = (pl.col("high") < pl.max_horizontal("open", "close", "low")) | (
        pl.col("low") > pl.min_horizontal("open", "close")
    )
    return parsed.filter(
        bad_time.fill_null(True)
        | bad_number.fill_null(True)
        | (bad_value | bad_ohlc).fill_null(False)
    )


def _row_errors(chunk: pl.DataFrame, interval: str, now_ms: int) -> list[RowError]:
    """Check one chunk row by row (columns: line, ms, ms_error, raw_*, and parsed prices)."""
    errors: list[RowError] = []
    step = INTERVAL_MS[interval]
    for row in chunk.iter_rows(named=True):
        line = row["line"]
        if row["ms_error"] is not None:
            errors.append(RowError(line, "ts", row["ms_error"]))
        else:
            ms = row["ms"]
            if ms < _EARLIEST.timestamp() * 1000 or ms > now_ms:
                when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
                errors.append(RowError(line, "ts", f"open time {when.isoformat()} is implausible"))
            elif interval == "1w" and (ms - _MONDAY_OFFSET_MS) % _WEEK_MS:
                errors.append(RowError(line, "ts", "weekly bar does not open on a Monday 00:00"))
            elif interval not in ("1w", "3d") and ms % step:
                errors.append(
                    RowError(line, "ts", f"open time is not on the {interval} grid of the interval")
                )
        values: dict[str, float] = {}
        for column in (*PRICE_COLUMNS, "volume"):
            raw, value = row[f"raw_{column}"], row[column]
            if raw is None or str(raw).strip() == "":
                errors.append(RowError(line, column, "missing value"))
            elif value is None or not math.isfinite(value):
                errors.append(RowError(line, column, f"{raw!r} is not a finite number"))
            elif column == "volume" and value < 0:
                errors.append(RowError(line, column, f"negative volume {value}"))
            elif column != "volume" and value <= 0:
                errors.append(RowError(line, column, f"price {value} is not positive"))
            else:
                values[column] = value
        if all(c in values for c in PRICE_COLUMNS):
            o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
            if h < max(o, c, lo):
                errors.append(
                    RowError(line, "high", f"high {h} is below open/close/low ({o}, {c}, {lo})")
                )
            if lo > min(o, c):
                errors.append(RowError(line, "low", f"low {lo} is above open/close ({o}, {c})"))
    return errors


def _order_errors(parsed: pl.DataFrame) -> list[RowError]:
    """Duplicate and out-of-order open times, naming the earlier line."""
    timed = parsed.filter(pl.col("ms").is_not_null()).select("line", "ms")
    errors: list[RowError] = []
    prev = timed.with_columns(
        prev_ms=pl.col("ms").shift(1), prev_line=pl.col("line").shift(1)
    ).filter(pl.col("prev_ms").is_not_null() & (pl.col("ms") <= pl.col("prev_ms")))
    first_line = dict(timed.group_by("ms").agg(pl.col("line").min()).iter_rows())
    for line, ms, prev_ms, prev_line in prev.iter_rows():
        if ms == prev_ms or first_line[ms] != line:
            errors.append(
                RowError(line, "ts", f"duplicate open time (first on line {first_line[ms]})")
            )
        else:
            errors.append(RowError(line, "ts", f"out of order: earlier than line {prev_line}"))
    return errors


def parse_candle_file(
    path: Path,
    instrument: str,
    interval: str,
    *,
    closures: ClosureCalendar = NO_CLOSURES,
    progress: Progress = _noop,
    now: datetime | None = None,
) -> tuple[pl.DataFrame, ImportSummary]:
    """Read, parse and validate a candle file without writing anything.

    Args:
        path: CSV or Parquet file.
        instrument: Symbol or alias (``PAXGUSDT``, ``Gold-USDT`` …).
        interval: Bar interval of the file, e.g. ``5m``.
        closures: Venue closures, so excused holes are not reported as gaps.
        progress: Called as ``progress(stage, done, total)`` while working.
        now: Latest plausible open time (defaults to the current time).

    Returns:
        The canonical candle frame (source ``import``) and a dry-run summary.

    Raises:
        CandleImportError: If the file is unreadable or any row is invalid (all rows listed).
        UnknownSymbolError: If the instrument is not a known gold perpetual.
        ValueError: If the interval is unknown.
    """
    symbol = resolve_symbol(instrument)
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {interval!r}; expected one of {list(INTERVAL_MS)}")
    now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
    raw, first_line = _read(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise CandleImportError(
            path,
            [RowError(1, None, f"missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)}")],
        )
    if raw.height == 0:
        raise CandleImportError(path, [RowError(first_line, None, "no data rows")])
    total = raw.height
    progress("parse", 0, total)
    ms, ms_error = _parse_times(raw["ts"])
    parsed = raw.select(
        pl.int_range(first_line, first_line + total, dtype=pl.Int64).alias("line"),
        ms.alias("ms"),
        ms_error.alias("ms_error"),
        *[pl.col(c).cast(pl.String).alias(f"raw_{c}") for c in (*PRICE_COLUMNS, "volume")],
        *[
            pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias(c)
            for c in (*PRICE_COLUMNS, "volume")
        ],
    )
    progress("parse", total, total)
    errors: list[RowError] = []
    for offset in range(0, total, CHUNK_ROWS):
        chunk = _suspect_rows(parsed.slice(offset, CHUNK_ROWS), interval, now_ms)
        errors.extend(_row_errors(chunk, interval, now_ms))
        progress("validate", min(offset + CHUNK_ROWS, total), total)
    errors.extend(_order_errors(parsed))
    if errors:
        raise CandleImportError(path, errors)

    frame = conform_candles(
        parsed.select(
            pl.lit(symbol).alias("instrument"),
            pl.lit(interval).alias("interval"),
            pl.from_epoch("ms", time_unit="ms").cast(pl.Datetime("us", "UTC")).alias("open_time"),
            *PRICE_COLUMNS,
            "volume",
            pl.lit(SOURCE).alias("source"),
        )
    )
    progress("expectations", 0, 1)
    calendar = closures.for_instrument(symbol)
    suite = validate_candles(frame, interval_ms=INTERVAL_MS[interval], closures=calendar)
    # Holes are reported as gaps below; every other failure is a defect of the file.
    defects = [f for f in suite.failures if f.column != GAP_COLUMN]
    if defects:
        line_of = dict(
            zip(
                frame["open_time"].map_elements(lambda t: t.isoformat(), return_dtype=pl.String),
                parsed.sort("ms")["line"],
                strict=True,
            )
        )
        raise CandleImportError(
            path,
            [
                RowError(line_of.get(t, 0), f.column, f"fails {f.expectation}")
                for f in defects
                for t in f.sample or [""]
            ],
        )
    returns = validate_returns(frame, interval)
    progress("expectations", 1, 1)
    gaps = find_gaps(frame["open_time"], INTERVAL_MS[interval], calendar)
    summary = ImportSummary(
        path=path,
        instrument=symbol,
        interval=interval,
        rows=frame.height,
        first_open_time=frame["open_time"][0],
        last_open_time=frame["open_time"][-1],
        gaps=tuple(gaps),
        outliers=returns.outliers,
        outlier_count=returns.outlier_count,
        written=0,
        kept_existing=0,
        dry_run=True,
    )
    return frame, summary


def import_candles(
    db: Database,
    path: Path,
    instrument: str,
    interval: str,
    *,
    dry_run: bool = False,
    closures: ClosureCalendar = NO_CLOSURES,
    progress: Progress = _noop,
    now: datetime | None = None,
) -> ImportSummary:
    """Validate a candle file and upsert it all-or-nothing with ``source = import``.

    Bars already stored from the exchange (any source other than ``import``) are kept, not
    overwritten; bars from an earlier import of the same range are replaced, so re-importing a
    corrected file is idempotent.

    Args:
        db: The database.
        path: CSV or Parquet file.
        instrument: Symbol or alias.
        interval: Bar interval of the file.
        dry_run: Validate and summarise only.
        closures: Venue closures (excused holes are not reported as gaps).
        progress: Called as ``progress(stage, done, total)``.
        now: Latest plausible open time (defaults to the current time).

    Returns:
        The summary.

    Raises:
        CandleImportError: If the file is rejected (nothing is written).
    """
    frame, summary = parse_candle_file(
        path, instrument, interval, closures=closures, progress=progress, now=now
    )
    if dry_run:
        return summary
    progress("write", 0, frame.height)
    exchange = read_frame(
        db,
        "SELECT open_time FROM candles WHERE instrument = $1 AND interval = $2 "
        "AND open_time >= $3 AND open_time <= $4 AND source <> $5",
        [summary.instrument, interval, summary.first_open_time, summary.last_open_time, SOURCE],
    )
    if exchange.height:
        keep = exchange.with_columns(pl.col("open_time").dt.convert_time_zone("UTC"))
        frame = frame.join(keep, on="open_time", how="anti")
    # One upsert is one transaction: a crash leaves the table as it was.
    written = upsert_frame(db, "candles", frame, CANDLE_KEY)
    progress("write", summary.rows, summary.rows)
    return ImportSummary(
        **{
            **summary.__dict__,
            "written": written,
            "kept_existing": summary.rows - frame.height,
            "dry_run": False,
        }
    )
