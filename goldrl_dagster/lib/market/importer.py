"""Import candle history from a CSV or Parquet file (another venue's or a vendor's export).

The file has columns ``ts,open,high,low,close,volume`` (extra columns are ignored), or the
layout of an MT5 export: tab- or comma-separated ``<DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE>
<TICKVOL> <VOL> <SPREAD>``, whose date and time make the open time and whose tick volume is
the volume. ``ts`` is the bar open time as ISO-8601 or epoch milliseconds (UTC).

Time zones are never guessed. A time with an offset (``…Z``, ``…+02:00``) and epoch
milliseconds are exact. A time without offset (a naive time, as in MT5 exports in the broker's
server time) needs the zone it was written in (``timezone``, an IANA name such as
``Europe/Athens``); a file with naive times and no zone is refused. A local time that a
daylight-saving switch skipped is refused with its line. A local time that occurs twice (clocks
went back) is resolved by file order: within a run of such times, the rows before the local time
steps back take the first (summer) offset and the rows from there on the second; a run that
never steps back does not say which is meant and is refused with its lines.

The bar spacing of the file (the most common difference between consecutive open times) must
be the interval given; a 5m file labelled 1m is refused before anything is written. Every row
is then parsed and checked (numbers, positive prices, non-negative volume, OHLC consistency,
open time on the interval's grid, no duplicate or out-of-order times): the same rules as the
Great Expectations candle suite applies to exchange data, run in polars so that importing does
not load GX. Any failure rejects the whole file with the line numbers of the offending rows
(values quoted at most ``QUOTE_CHARS`` characters) and nothing is written; a valid file is
upserted in one transaction with ``source = import``, and the summary says how many rows were
inserted, changed and already stored unchanged.

Missing bars inside the file (e.g. a vendor's weekend close) are not errors: they are reported
as gaps, excused where a venue closure or session calendar is configured, and healed or flagged
like any other gap. Large moves are reported as return outliers, never rejected: a crypto-only
wick on a gold token is real data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from expectations.outliers import MOVE_COLUMN, ReturnOutlier, bar_moves, listed_outliers
from expectations.outliers import return_threshold as _return_threshold
from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.market.candles import CANDLE_KEY, INTERVAL_MS, conform_candles
from goldrl_dagster.lib.market.closures import NO_CLOSURES, ClosureCalendar
from goldrl_dagster.lib.market.gaps import Gap, find_gaps
from goldrl_dagster.lib.market.import_times import (
    QUOTE_CHARS,
    parse_times,
    quote,
    quoted_preview,
    zone_info,
)
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
_WEEK_MS = 7 * 86_400_000
_MONDAY_OFFSET_MS = 4 * 86_400_000  # 1970-01-05, the first Monday after the epoch
NAIVE_HINT = (
    "pass the time zone the file was written in, e.g. --timezone UTC, or --timezone "
    "Europe/Athens for an MT5 export in that server time"
)

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RowError:
    """One problem in the file.

    Attributes:
        line: Line number in a CSV file (header = line 1) or row number in a Parquet file;
            0 for a problem of the whole file.
        column: Column concerned, if one.
        message: What is wrong.
    """

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f" [{self.column}]" if self.column else ""
        if self.line <= 0:
            return f"file{where}: {self.message}"
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
        written: Rows upserted: ``inserted + changed`` (0 for a dry run).
        kept_existing: Rows not written because exchange data for the same bar is stored.
        dry_run: True when nothing was written by request.
        inserted: Bars that were not stored before.
        changed: Bars stored by an earlier import whose values this file changes.
        unchanged: Bars stored by an earlier import with the same values (not rewritten).
        timezone: Zone the file's naive times were read in (None: the file had none).
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
    inserted: int = 0
    changed: int = 0
    unchanged: int = 0
    timezone: str | None = None


def _noop(stage: str, done: int, total: int) -> None:
    return None


def _separator(path: Path) -> str:
    """The field separator of a CSV file: the most frequent of , ; and tab in its header."""
    with path.open("rb") as handle:
        head = handle.readline(64_000)
    counts = {sep: head.count(sep.encode()) for sep in (",", "\t", ";")}
    return max(counts, key=lambda sep: counts[sep]) if any(counts.values()) else ","


def _ragged_line(path: Path, separator: str) -> RowError | None:
    """Find the first line with more fields than the header (streaming, quotes respected)."""
    sep = separator.encode()
    quoted = re.compile(rb'"[^"]*"')
    with path.open("rb") as handle:
        expected = None
        for number, line in enumerate(handle, start=1):
            fields = quoted.sub(b"", line).count(sep) + 1
            if expected is None:
                expected = fields
            elif fields > expected:
                return RowError(
                    number,
                    None,
                    f"{fields} fields where the header has {expected}; every line needs the "
                    "header's columns, separated by " + repr(separator),
                )
    return None


def _read(path: Path) -> tuple[pl.DataFrame, int]:
    """Read the file; return the frame and the line number of its first data row."""
    if not path.is_file():
        raise CandleImportError(path, [RowError(0, None, "file not found")])
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv", ".txt", ".tsv"):
        raise CandleImportError(
            path,
            [RowError(0, None, f"unsupported file type {quote(suffix)}; use .csv or .parquet")],
        )
    separator = ","
    try:
        if suffix == ".parquet":
            return pl.read_parquet(path), 1
        separator = _separator(path)
        # Everything as text: parse errors must name the line, not abort the read.
        frame = pl.read_csv(
            path, infer_schema=False, truncate_ragged_lines=False, separator=separator
        )
        return frame, 2
    except (pl.exceptions.PolarsError, OSError) as exc:
        if suffix != ".parquet" and "more fields" in str(exc):
            ragged = _ragged_line(path, separator)
            if ragged is not None:
                raise CandleImportError(path, [ragged]) from None
        detail = quote(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 300)
        raise CandleImportError(path, [RowError(0, None, f"unreadable file: {detail}")]) from None


def _normalise_layout(raw: pl.DataFrame) -> pl.DataFrame:
    """Map an MT5-style header (``<DATE> <TIME> … <TICKVOL>``) onto ts … volume."""
    names = [c.strip().strip("<>").strip().lower() for c in raw.columns]
    if len(set(names)) == len(names):
        raw = raw.rename(dict(zip(raw.columns, names, strict=True)))
    if "ts" not in raw.columns and {"date", "time"} <= set(raw.columns):
        date = pl.col("date").cast(pl.String).str.strip_chars().str.replace_all(r"\.", "-")
        raw = raw.with_columns(
            pl.concat_str(
                [date, pl.col("time").cast(pl.String).str.strip_chars()], separator=" "
            ).alias("ts")
        )
    if "volume" not in raw.columns and "tickvol" in raw.columns:
        raw = raw.with_columns(pl.col("tickvol").alias("volume"))
    return raw


def _spacing_label(step_ms: int) -> str:
    for name, ms in INTERVAL_MS.items():
        if ms == step_ms:
            return name
    if step_ms % 60_000 == 0:
        return f"{step_ms // 60_000} minutes"
    return f"{step_ms / 1000:g} seconds"


def detect_spacing(open_ms: pl.Series) -> tuple[int, int, int] | None:
    """The dominant spacing of a series of open times (epoch ms, file order).

    Args:
        open_ms: Open times; nulls are skipped.

    Returns:
        (spacing in ms, how many consecutive steps have it, steps in all), or None when
        fewer than two distinct times are given.
    """
    steps = open_ms.drop_nulls().diff().drop_nulls()
    steps = steps.filter(steps > 0)
    if steps.len() == 0:
        return None
    counts = steps.value_counts(sort=True)
    # Ties go to the smaller spacing, so the answer does not depend on hash order.
    top = counts.filter(pl.col("count") == counts["count"].max()).sort(steps.name)
    return int(top[steps.name][0]), int(top["count"][0]), steps.len()


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
    """Check one chunk row by row (line, ms, ms_error, raw_* previews, len_*, parsed prices)."""
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
            raw, size, value = row[f"raw_{column}"], row[f"len_{column}"], row[column]
            if raw is None or (size <= QUOTE_CHARS and str(raw).strip() == ""):
                errors.append(RowError(line, column, "missing value"))
            elif value is None or not math.isfinite(value):
                shown = quoted_preview(raw, size)
                errors.append(RowError(line, column, f"{shown} is not a finite number"))
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
    if prev.height == 0:
        return errors
    repeated = timed.filter(pl.col("ms").is_in(prev["ms"].implode()))
    first_line = dict(repeated.group_by("ms").agg(pl.col("line").min()).iter_rows())
    for line, ms, prev_ms, prev_line in prev.iter_rows():
        if ms == prev_ms or first_line[ms] != line:
            errors.append(
                RowError(line, "ts", f"duplicate open time (first on line {first_line[ms]})")
            )
        else:
            errors.append(RowError(line, "ts", f"out of order: earlier than line {prev_line}"))
    return errors


def _outliers(frame: pl.DataFrame, interval: str) -> tuple[tuple[ReturnOutlier, ...], int]:
    """Return outliers of the return-outlier suite, computed in polars (no GX)."""
    limit = _return_threshold(interval)
    flagged = bar_moves(frame).filter(pl.col(MOVE_COLUMN) > limit)
    return listed_outliers(flagged), flagged.height


def _naive_error(path: Path, parsed: pl.DataFrame) -> CandleImportError:
    naive = parsed.filter(pl.col("naive"))
    line = int(naive["line"][0])
    return CandleImportError(
        path,
        [
            RowError(
                line,
                "ts",
                f"{naive.height} open time(s) have no UTC offset (first here); naive times "
                f"are not assumed to be UTC: {NAIVE_HINT}",
            )
        ],
    )


def _spacing_error(path: Path, parsed: pl.DataFrame, interval: str) -> CandleImportError | None:
    found = detect_spacing(parsed["ms"])
    if found is None or found[0] == INTERVAL_MS[interval]:
        return None
    step, count, steps = found
    label = _spacing_label(step)
    hint = f"pass --interval {label}" if label in INTERVAL_MS else "resample the file first"
    return CandleImportError(
        path,
        [
            RowError(
                0,
                "ts",
                f"the bars are {label} apart ({count:,} of {steps:,} consecutive steps), but "
                f"the interval given is {interval}; {hint} if the file holds {label} bars",
            )
        ],
    )


def parse_candle_file(
    path: Path,
    instrument: str,
    interval: str,
    *,
    timezone: str | None = None,
    closures: ClosureCalendar = NO_CLOSURES,
    progress: Progress = _noop,
    now: datetime | None = None,
) -> tuple[pl.DataFrame, ImportSummary]:
    """Read, parse and validate a candle file without writing anything.

    Args:
        path: CSV or Parquet file (or an MT5 export, see the module docs).
        instrument: Symbol or alias (``PAXGUSDT``, ``Gold-USDT`` …).
        interval: Bar interval of the file, e.g. ``5m``.
        timezone: IANA zone of the file's naive times (required when it has any).
        closures: Venue closures, so excused holes are not reported as gaps.
        progress: Called as ``progress(stage, done, total)`` while working.
        now: Latest plausible open time (defaults to the current time).

    Returns:
        The canonical candle frame (source ``import``) and a dry-run summary.

    Raises:
        CandleImportError: If the file is unreadable, has naive times and no ``timezone``, its
            bar spacing is not ``interval``, or any row is invalid (all rows listed).
        UnknownSymbolError: If the instrument is not a known gold perpetual.
        ValueError: If the interval or the time zone is unknown.
    """
    symbol = resolve_symbol(instrument)
    if interval not in INTERVAL_MS:
        raise ValueError(f"unknown interval {quote(interval)}; expected one of {list(INTERVAL_MS)}")
    if timezone is not None:
        zone_info(timezone)
    now_ms = int((now or datetime.now(UTC)).timestamp() * 1000)
    raw, first_line = _read(path)
    raw = _normalise_layout(raw)
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise CandleImportError(
            path,
            [
                RowError(
                    1,
                    None,
                    f"missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)} or an "
                    "MT5 export (<DATE> <TIME> <OPEN> <HIGH> <LOW> <CLOSE> <TICKVOL>)",
                )
            ],
        )
    if raw.height == 0:
        raise CandleImportError(path, [RowError(first_line, None, "no data rows")])
    total = raw.height
    progress("parse", 0, total)
    ms, ms_error, naive = parse_times(raw["ts"], timezone)
    parsed = raw.select(
        pl.int_range(first_line, first_line + total, dtype=pl.Int64).alias("line"),
        ms.alias("ms"),
        ms_error.alias("ms_error"),
        naive.alias("naive"),
        # Only the first characters of a raw value are kept for messages, with its length.
        *[
            pl.col(c).cast(pl.String).str.slice(0, QUOTE_CHARS + 1).alias(f"raw_{c}")
            for c in (*PRICE_COLUMNS, "volume")
        ],
        *[
            pl.col(c).cast(pl.String).str.len_chars().alias(f"len_{c}")
            for c in (*PRICE_COLUMNS, "volume")
        ],
        *[
            pl.col(c).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).alias(c)
            for c in (*PRICE_COLUMNS, "volume")
        ],
    )
    progress("parse", total, total)
    if timezone is None and bool(parsed["naive"].any()):
        raise _naive_error(path, parsed)
    # A mislabelled interval is refused before the row checks: it would fail every row.
    spacing = _spacing_error(path, parsed, interval)
    if spacing is not None:
        raise spacing
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
    outliers, outlier_count = _outliers(frame, interval)
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
        outliers=outliers,
        outlier_count=outlier_count,
        written=0,
        kept_existing=0,
        dry_run=True,
        timezone=timezone if bool(parsed["naive"].any()) else None,
    )
    return frame, summary


def _compare_stored(db: Database, frame: pl.DataFrame, summary: ImportSummary) -> pl.DataFrame:
    """Tag each row of the frame ``exchange`` / ``insert`` / ``change`` / ``same``."""
    stored = read_frame(
        db,
        "SELECT open_time, open, high, low, close, volume, source FROM candles "
        "WHERE instrument = $1 AND interval = $2 AND open_time >= $3 AND open_time <= $4",
        [summary.instrument, summary.interval, summary.first_open_time, summary.last_open_time],
    )
    values = ("open", "high", "low", "close", "volume")
    stored = stored.select(
        pl.col("open_time").dt.convert_time_zone("UTC").cast(pl.Datetime("us", "UTC")),
        *[pl.col(c).alias(f"stored_{c}") for c in values],
        pl.col("source").alias("stored_source"),
    )
    same = pl.all_horizontal([pl.col(c) == pl.col(f"stored_{c}") for c in values])
    return frame.join(stored, on="open_time", how="left").select(
        *frame.columns,
        pl.when(pl.col("stored_source").is_null())
        .then(pl.lit("insert"))
        .when(pl.col("stored_source") != SOURCE)
        .then(pl.lit("exchange"))
        .when(same)
        .then(pl.lit("same"))
        .otherwise(pl.lit("change"))
        .alias("action"),
    )


def import_candles(
    db: Database,
    path: Path,
    instrument: str,
    interval: str,
    *,
    timezone: str | None = None,
    dry_run: bool = False,
    closures: ClosureCalendar = NO_CLOSURES,
    progress: Progress = _noop,
    now: datetime | None = None,
) -> ImportSummary:
    """Validate a candle file and upsert it all-or-nothing with ``source = import``.

    Bars already stored from the exchange (any source other than ``import``) are kept, not
    overwritten; bars from an earlier import of the same range are replaced where the file
    changes them and left alone where it does not, so re-importing a file writes nothing and
    reports every row unchanged.

    Args:
        db: The database.
        path: CSV or Parquet file.
        instrument: Symbol or alias.
        interval: Bar interval of the file.
        timezone: IANA zone of the file's naive times (required when it has any).
        dry_run: Validate, compare with what is stored and summarise; write nothing.
        closures: Venue closures (excused holes are not reported as gaps).
        progress: Called as ``progress(stage, done, total)``.
        now: Latest plausible open time (defaults to the current time).

    Returns:
        The summary, with rows inserted / changed / unchanged (what would be, for a dry run).

    Raises:
        CandleImportError: If the file is rejected (nothing is written).
    """
    frame, summary = parse_candle_file(
        path, instrument, interval, timezone=timezone, closures=closures, progress=progress,
        now=now,
    )  # fmt: skip
    tagged = _compare_stored(db, frame, summary)
    counts = dict(tagged.group_by("action").len().iter_rows())
    pending = tagged.filter(pl.col("action").is_in(["insert", "change"])).drop("action")
    written = 0
    if not dry_run:
        progress("write", 0, pending.height)
        # One upsert is one transaction: a crash leaves the table as it was.
        written = upsert_frame(db, "candles", pending, CANDLE_KEY)
        progress("write", pending.height, pending.height)
    return ImportSummary(
        **{
            **summary.__dict__,
            "written": written,
            "kept_existing": counts.get("exchange", 0),
            "dry_run": dry_run,
            "inserted": counts.get("insert", 0),
            "changed": counts.get("change", 0),
            "unchanged": counts.get("same", 0),
        }
    )
