"""Open times of an imported candle file: parsed, localised and refused with a reason.

Part of the vendor importer (``lib/market/importer.py``, whose docstring states the rules):
epoch milliseconds and times with an offset are exact; naive times need the zone they were
written in; a skipped local time is refused, a repeated one resolved by file order within its
run (or refused when the run never steps back). Also the quoting of bad values in errors.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

# Characters of a bad value an error quotes; the rest is counted, never copied.
QUOTE_CHARS = 80
# Timestamps below this many ms (1973) are almost certainly epoch seconds.
_MIN_EPOCH_MS = 100_000_000_000
# The longest spelling of an open time (ISO with nanoseconds, offset and padding).
_MAX_TIME_CHARS = 64
# Spellings of a time with an offset, and of a naive time (vendor and MT5 styles).
_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y.%m.%d %H:%M:%S",
    "%Y.%m.%d %H:%M",
)


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """Quote a value for an error message, cut to ``limit`` characters.

    Args:
        value: The value (its ``str``).
        limit: Characters shown.

    Returns:
        ``'…'`` with ``… (N more characters)`` appended when it was cut.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text) - limit} more characters)"


def quoted_preview(preview: str | None, length: int | None) -> str:
    """Quote a value of which only its first characters and its length were fetched."""
    shown = (preview or "")[:QUOTE_CHARS]
    more = (length or 0) - len(shown)
    return f"{shown!r}… ({more} more characters)" if more > 0 else repr(shown)


def zone_info(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: If no such zone is known (the message names the value).
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {quote(name)}; expected an IANA name such as UTC, "
            "America/New_York or Europe/Athens"
        ) from None


def _localise(naive: pl.Series, zone: str) -> tuple[pl.Series, pl.Series]:
    """Naive local times (epoch-like, no zone) to UTC ms, with the reason of each refusal.

    Implements the module's rule: skipped local times are refused; a repeated local time is
    resolved by file order within its run, or refused when the run never steps back.
    """
    earliest = naive.dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
    latest = naive.dt.replace_time_zone(zone, ambiguous="latest", non_existent="null")
    frame = pl.DataFrame(
        {
            "local": naive.dt.epoch("ms"),
            "early": earliest.dt.epoch("ms"),
            "late": latest.dt.epoch("ms"),
        }
    ).with_columns(amb=(pl.col("early") != pl.col("late")).fill_null(False))
    frame = frame.with_columns(
        run=(pl.col("amb") != pl.col("amb").shift(1)).fill_null(True).cum_sum()
    )
    back = (pl.col("local").diff().over("run") <= 0).fill_null(False).cum_sum().over("run") > 0
    frame = frame.with_columns(
        back=back, stepped=(pl.col("local").diff().over("run") <= 0).any().over("run")
    )
    resolved = (
        pl.when(~pl.col("amb"))
        .then(pl.col("early"))
        .when(~pl.col("stepped"))
        .then(None)
        .when(pl.col("back"))
        .then(pl.col("late"))
        .otherwise(pl.col("early"))
    )
    reason = (
        pl.when(pl.col("local").is_not_null() & pl.col("early").is_null())
        .then(pl.lit(f"local time does not exist in {zone} (the clocks skipped it)"))
        .when(pl.col("amb") & ~pl.col("stepped"))
        .then(
            pl.lit(
                f"local time occurs twice in {zone} (the clocks went back) and the file does "
                "not repeat it, so which one is meant is unknown; export with a UTC offset"
            )
        )
    )
    out = frame.select(resolved.alias("ms"), reason.alias("reason"))
    return out["ms"], out["reason"]


def _strptime_first(
    text: pl.Series, rows: pl.Series, formats: tuple[str, ...], dtype: pl.Datetime
) -> pl.Series:
    """Parse ``text`` where ``rows`` is true with the first of ``formats`` that fits (else null).

    Each further format is tried only on the rows still unparsed, so a file in one spelling
    pays for one parse.
    """
    out = pl.Series(text.name, [None] * text.len(), dtype=dtype)
    pending = rows.arg_true()
    for fmt in formats:
        if pending.len() == 0:
            break
        parsed = text.gather(pending).str.strptime(dtype, fmt, strict=False)
        hit = parsed.is_not_null()
        if hit.any():
            out = out.scatter(pending.filter(hit), parsed.filter(hit))
        pending = pending.filter(~hit)
    return out


def parse_times(ts: pl.Series, zone: str | None) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Return (open time as epoch ms or null, reason for each null, naive flag per row)."""
    n = ts.len()
    no_reason = pl.Series([None] * n, dtype=pl.String)
    if isinstance(ts.dtype, pl.Datetime):
        if ts.dtype.time_zone:
            ms = ts.dt.epoch("ms")
            naive_flags = pl.Series([False] * n)
            reason = no_reason
        else:
            naive_flags = ts.is_not_null()
            if zone is None:
                ms, reason = pl.Series([None] * n, dtype=pl.Int64), no_reason
            else:
                ms, reason = _localise(ts.cast(pl.Datetime("us")), zone)
        missing = pl.Series(["missing open time"] * n, dtype=pl.String)
        reason = reason.zip_with(reason.is_not_null(), missing.zip_with(ts.is_null(), no_reason))
        return ms, reason, naive_flags
    raw_text = ts.cast(pl.String)
    size = raw_text.str.len_chars()
    # No time is longer than this: longer values are refused unparsed (and never copied).
    text = raw_text.zip_with(
        (size <= _MAX_TIME_CHARS).fill_null(True), pl.Series([None] * n, dtype=pl.String)
    ).str.strip_chars()
    # Fast, vectorised paths for the usual spellings; only the rest is parsed row by row.
    epoch = text.str.extract(r"^(-?\d+)$").cast(pl.Int64, strict=False)
    unparsed = epoch.is_null() & text.is_not_null()
    offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$").fill_null(False)
    aware = _strptime_first(text, unparsed & offset, _AWARE_FORMATS, pl.Datetime("us", "UTC"))
    naive = _strptime_first(text, unparsed & ~offset, _NAIVE_FORMATS, pl.Datetime("us"))
    naive_flags = naive.is_not_null()
    local_ms: pl.Series = pl.Series([None] * n, dtype=pl.Int64)
    local_reason = no_reason
    if zone is not None and naive_flags.any():
        local_ms, local_reason = _localise(naive, zone)
    ms = epoch.fill_null(aware.dt.epoch("ms")).fill_null(local_ms)
    small = (epoch.abs() < _MIN_EPOCH_MS).fill_null(False)
    todo = ((ms.is_null() & ~naive_flags) | small).arg_true()
    if todo.len() == 0:
        return ms, local_reason, naive_flags
    values = ms.to_list()
    reasons: list[str | None] = local_reason.to_list()
    # Only short previews of the bad values reach Python: a huge field is never copied.
    preview = raw_text.str.slice(0, QUOTE_CHARS).gather(todo).to_list()
    length = size.gather(todo).to_list()
    for i, shown, chars in zip(todo.to_list(), preview, length, strict=True):
        values[i] = None
        if shown is None or not shown.strip():
            reasons[i] = "missing open time"
        elif small[i]:
            reasons[i] = f"{shown.strip()} looks like epoch seconds; expected epoch milliseconds"
        else:
            reasons[i] = (
                f"{quoted_preview(shown, chars)} is neither ISO-8601 nor epoch milliseconds"
            )
    return pl.Series(values, dtype=pl.Int64), pl.Series(reasons, dtype=pl.String), naive_flags
