"""Reads and writes of the market feeds beside candles, and of data-quality findings.

Each feed has a canonical polars schema (``*_SCHEMA``), a builder from the BingX client's
records (``*_frame``) and an idempotent writer: rows are upserted on the table's key, so
re-running a partition or re-taking a snapshot with the same exchange timestamp rewrites the
same row instead of adding one. Trades keep the first copy seen (they are immutable facts and
arrive repeatedly): a trade's key is its BingX fill id when the record has one (REST), so
distinct fills with the same price, size and time stay distinct, and its content otherwise
(stream pushes carry no id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from goldrl_dagster.lib.market.candles import (
    CANDLE_KEY,
    CANDLE_SCHEMA,
    SOURCES,
    conform_candles,
    empty_candles,
)
from goldrl_dagster.lib.market.funding_intervals import (
    INTERVAL_SOURCES,
    REPORTED,
    IntervalConflict,
    derive_funding_intervals,
)
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame
from goldrl_dagster.lib.storage.server import Database

if TYPE_CHECKING:
    from goldrl_dagster.lib.bingx.models import (
        DepthSnapshot,
        FundingRate,
        OpenInterest,
        PremiumIndex,
        Ticker24h,
        Trade,
    )

_TIME = pl.Datetime("us", "UTC")
_F64 = pl.Float64()
_STR = pl.String()

FUNDING_SCHEMA: dict[str, pl.DataType] = {
    "instrument": _STR,
    "funding_time": _TIME,
    "funding_rate": _F64,
    "funding_interval_hours": pl.Int32(),
    # Where the interval came from (lib/market/funding_intervals.py); null with the interval.
    "funding_interval_source": _STR,
    "source": _STR,
}
PREMIUM_INDEX_SCHEMA: dict[str, pl.DataType] = {
    "instrument": _STR,
    "snapshot_time": _TIME,
    "mark_price": _F64,
    "index_price": _F64,
    "last_funding_rate": _F64,
    "next_funding_time": _TIME,
    "funding_interval_hours": pl.Int32(),
    "source": _STR,
}
OPEN_INTEREST_SCHEMA: dict[str, pl.DataType] = {
    "instrument": _STR,
    "snapshot_time": _TIME,
    "open_interest": _F64,
    "unit_note": _STR,
    "source": _STR,
}
TICKER_SCHEMA: dict[str, pl.DataType] = {
    "instrument": _STR,
    "snapshot_time": _TIME,
    "last_price": _F64,
    "open_price": _F64,
    "high_price": _F64,
    "low_price": _F64,
    "volume": _F64,
    "quote_volume": _F64,
    "price_change_percent": _F64,
    "bid_price": _F64,
    "bid_qty": _F64,
    "ask_price": _F64,
    "ask_qty": _F64,
    "source": _STR,
}
DEPTH_SCHEMA: dict[str, pl.DataType] = {
    "instrument": _STR,
    "snapshot_time": _TIME,
    "depth_limit": pl.Int32(),
    "bid_prices": pl.List(_F64),
    "bid_qtys": pl.List(_F64),
    "ask_prices": pl.List(_F64),
    "ask_qtys": pl.List(_F64),
    "source": _STR,
}
TRADE_SCHEMA: dict[str, pl.DataType] = {
    "instrument": _STR,
    "trade_key": _STR,
    "trade_time": _TIME,
    "price": _F64,
    "quantity": _F64,
    "is_buyer_maker": pl.Boolean(),
    "source": _STR,
}
FINDING_SCHEMA: dict[str, pl.DataType] = {
    "kind": _STR,
    "instrument": _STR,
    "interval": _STR,
    "at": _TIME,
    "severity": _STR,
    "detail": _STR,
}
SEVERITIES = ("info", "warning", "error")

# Open interest units are disputed between BingX's docs and third-party sources; every stored
# value carries this label so a later correction can be applied knowingly.
OPEN_INTEREST_UNIT_NOTE = (
    "as reported by BingX openInterest; unit disputed (contracts, base units or USDT)"
)

# table -> (schema, key columns, time column used by range reads)
_TABLES: dict[str, tuple[dict[str, pl.DataType], tuple[str, ...], str]] = {
    "funding_rates": (FUNDING_SCHEMA, ("instrument", "funding_time"), "funding_time"),
    "premium_index_snapshots": (
        PREMIUM_INDEX_SCHEMA,
        ("instrument", "snapshot_time"),
        "snapshot_time",
    ),
    "open_interest_snapshots": (
        OPEN_INTEREST_SCHEMA,
        ("instrument", "snapshot_time"),
        "snapshot_time",
    ),
    "ticker_snapshots": (TICKER_SCHEMA, ("instrument", "snapshot_time"), "snapshot_time"),
    "depth_snapshots": (DEPTH_SCHEMA, ("instrument", "snapshot_time"), "snapshot_time"),
    "trades": (TRADE_SCHEMA, ("instrument", "trade_key"), "trade_time"),
}


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
    return source


def _ms(values: Sequence[int | None]) -> pl.Series:
    """Epoch milliseconds (None kept) as UTC microsecond datetimes."""
    return pl.Series(values, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")).cast(_TIME)


def conform_feed(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Cast a frame to a feed table's canonical schema and validate it.

    Args:
        table: One of the feed tables (``funding_rates``, ``trades``, …).
        frame: Rows with at least the table's canonical columns (extras are dropped).

    Returns:
        The frame with canonical columns and types, sorted by the table's key.

    Raises:
        ValueError: If the table is unknown, a column is missing, a key or required value is
            null, or ``source`` holds an unknown value.
    """
    if table not in _TABLES:
        raise ValueError(f"unknown feed table {table!r}; expected one of {sorted(_TABLES)}")
    schema, key, _ = _TABLES[table]
    if table == "funding_rates":
        frame = _with_stated_source(frame)
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise ValueError(f"{table} frame lacks column(s) {missing}")
    out = frame.select([pl.col(c).cast(t) for c, t in schema.items()])
    for column in (*key, "source"):
        if out[column].null_count():
            raise ValueError(f"{table} frame has null {column!r} values")
    bad = out.filter(~pl.col("source").is_in(SOURCES))["source"].unique().to_list()
    if bad:
        raise ValueError(f"unknown source(s) {bad} in {table}; expected one of {SOURCES}")
    if table == "funding_rates":
        _check_interval_sources(out)
    return out.sort(list(key))


def _with_stated_source(frame: pl.DataFrame) -> pl.DataFrame:
    """An interval given without provenance was stated by the row's writer: ``reported``."""
    if "funding_interval_hours" not in frame.columns:
        return frame
    if "funding_interval_source" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=_STR).alias("funding_interval_source"))
    stated = (
        pl.col("funding_interval_hours").is_not_null() & pl.col("funding_interval_source").is_null()
    )
    return frame.with_columns(
        pl.when(stated)
        .then(pl.lit(REPORTED))
        .otherwise(pl.col("funding_interval_source").cast(_STR))
        .alias("funding_interval_source")
    )


def _check_interval_sources(frame: pl.DataFrame) -> None:
    sources = frame["funding_interval_source"]
    bad = sorted(set(sources.drop_nulls().to_list()) - set(INTERVAL_SOURCES))
    if bad:
        raise ValueError(
            f"unknown funding interval source(s) {bad}; expected one of {INTERVAL_SOURCES}"
        )
    hours = frame["funding_interval_hours"]
    if (hours.is_null() != sources.is_null()).any():
        raise ValueError(
            "funding_rates rows must have a funding_interval_source exactly when they have a "
            "funding_interval_hours"
        )
    if (hours.drop_nulls() <= 0).any():
        raise ValueError("funding_interval_hours must be a positive number of hours")


def _write(db: Database, table: str, frame: pl.DataFrame, *, update: bool = True) -> int:
    _, key, _ = _TABLES[table]
    return upsert_frame(db, table, conform_feed(table, frame), key, update=update)


# -- builders from client records ---------------------------------------------------------------


def funding_frame(rates: Sequence[FundingRate], source: str) -> pl.DataFrame:
    """Build a ``funding_rates`` frame from funding-history records.

    A row's interval is set only when the record itself states it (source ``reported``);
    BingX's history does not, so it is normally null here and established per settlement when
    written (:func:`store_funding_rates`). goldrl never assumes 8 h.
    """
    _check_source(source)
    hours = [r.funding_interval_hours for r in rates]
    return conform_feed(
        "funding_rates",
        pl.DataFrame(
            {
                "instrument": [r.symbol for r in rates],
                "funding_time": _ms([r.funding_time_ms for r in rates]),
                "funding_rate": [r.funding_rate for r in rates],
                "funding_interval_hours": pl.Series(hours, dtype=pl.Int32),
                "funding_interval_source": pl.Series(
                    [None if h is None else REPORTED for h in hours], dtype=_STR
                ),
                "source": [source] * len(rates),
            },
            schema_overrides={"instrument": _STR, "funding_rate": _F64, "source": _STR},
        ),
    )


def with_funding_interval(
    frame: pl.DataFrame, hours: int | None, source: str = REPORTED
) -> pl.DataFrame:
    """Stamp a known funding interval on rows that have none.

    Args:
        frame: A ``funding_rates`` frame.
        hours: The interval, or None (frame returned unchanged).
        source: Where it came from (one of ``INTERVAL_SOURCES``).

    Raises:
        ValueError: If ``hours`` is not a positive integer or ``source`` is unknown.
    """
    if hours is None:
        return frame
    if isinstance(hours, bool) or not isinstance(hours, int) or hours <= 0:
        raise ValueError(f"funding interval must be a positive number of hours, got {hours!r}")
    if source not in INTERVAL_SOURCES:
        raise ValueError(f"unknown funding interval source {source!r}; expected {INTERVAL_SOURCES}")
    unknown = pl.col("funding_interval_hours").is_null()
    return frame.with_columns(
        pl.when(unknown)
        .then(pl.lit(hours, dtype=pl.Int32))
        .otherwise(pl.col("funding_interval_hours"))
        .alias("funding_interval_hours"),
        pl.when(unknown)
        .then(pl.lit(source, dtype=_STR))
        .otherwise(pl.col("funding_interval_source"))
        .alias("funding_interval_source"),
    )


def premium_index_frame(snapshots: Sequence[PremiumIndex], source: str) -> pl.DataFrame:
    """Build a ``premium_index_snapshots`` frame (snapshot time = the exchange's time)."""
    _check_source(source)
    return conform_feed(
        "premium_index_snapshots",
        pl.DataFrame(
            {
                "instrument": [s.symbol for s in snapshots],
                "snapshot_time": _ms([s.time_ms for s in snapshots]),
                "mark_price": [s.mark_price for s in snapshots],
                "index_price": [s.index_price for s in snapshots],
                "last_funding_rate": [s.last_funding_rate for s in snapshots],
                "next_funding_time": _ms([s.next_funding_time_ms for s in snapshots]),
                "funding_interval_hours": pl.Series(
                    [s.funding_interval_hours for s in snapshots], dtype=pl.Int32
                ),
                "source": [source] * len(snapshots),
            },
            schema_overrides={"instrument": _STR, "source": _STR},
        ),
    )


def open_interest_frame(
    snapshots: Sequence[OpenInterest], source: str, unit_note: str = OPEN_INTEREST_UNIT_NOTE
) -> pl.DataFrame:
    """Build an ``open_interest_snapshots`` frame, labelling the value's disputed unit."""
    _check_source(source)
    return conform_feed(
        "open_interest_snapshots",
        pl.DataFrame(
            {
                "instrument": [s.symbol for s in snapshots],
                "snapshot_time": _ms([s.time_ms for s in snapshots]),
                "open_interest": [s.open_interest for s in snapshots],
                "unit_note": [unit_note] * len(snapshots),
                "source": [source] * len(snapshots),
            },
            schema_overrides={"instrument": _STR, "source": _STR, "open_interest": _F64},
        ),
    )


_TICKER_FIELDS = (
    "last_price", "open_price", "high_price", "low_price", "volume", "quote_volume",
    "price_change_percent", "bid_price", "bid_qty", "ask_price", "ask_qty",
)  # fmt: skip


def ticker_frame(tickers: Sequence[Ticker24h], source: str) -> pl.DataFrame:
    """Build a ``ticker_snapshots`` frame from 24 h tickers."""
    _check_source(source)
    columns: dict[str, Any] = {
        "instrument": [t.symbol for t in tickers],
        "snapshot_time": _ms([t.time_ms for t in tickers]),
    }
    for name in _TICKER_FIELDS:
        columns[name] = pl.Series([getattr(t, name) for t in tickers], dtype=_F64)
    columns["source"] = [source] * len(tickers)
    return conform_feed(
        "ticker_snapshots",
        pl.DataFrame(columns, schema_overrides={"instrument": _STR, "source": _STR}),
    )


def depth_frame(books: Sequence[DepthSnapshot], source: str, depth_limit: int) -> pl.DataFrame:
    """Build a ``depth_snapshots`` frame; levels are stored best first as parallel arrays.

    Raises:
        ValueError: If ``depth_limit`` is not positive.
    """
    _check_source(source)
    if depth_limit <= 0:
        raise ValueError(f"depth limit must be positive, got {depth_limit}")

    def side(levels: Sequence[tuple[float, float]], index: int) -> list[float]:
        return [float(level[index]) for level in levels]

    bids = [sorted(b.bids, key=lambda lvl: -float(lvl[0])) for b in books]
    asks = [sorted(b.asks, key=lambda lvl: float(lvl[0])) for b in books]
    return conform_feed(
        "depth_snapshots",
        pl.DataFrame(
            {
                "instrument": [b.symbol for b in books],
                "snapshot_time": _ms([b.time_ms for b in books]),
                "depth_limit": pl.Series([depth_limit] * len(books), dtype=pl.Int32),
                "bid_prices": pl.Series([side(b, 0) for b in bids], dtype=pl.List(_F64)),
                "bid_qtys": pl.Series([side(b, 1) for b in bids], dtype=pl.List(_F64)),
                "ask_prices": pl.Series([side(a, 0) for a in asks], dtype=pl.List(_F64)),
                "ask_qtys": pl.Series([side(a, 1) for a in asks], dtype=pl.List(_F64)),
                "source": [source] * len(books),
            },
            schema_overrides={"instrument": _STR, "source": _STR},
        ),
    )


def trades_frame(trades: Sequence[Trade], source: str) -> pl.DataFrame:
    """Build a ``trades`` frame; repeats of the same trade (same ``trade_key``) collapse.

    ``trade_key`` is the fill id's digest for trades that have one, else the content's (see
    :func:`goldrl_dagster.lib.bingx.models.trade_key`).
    """
    _check_source(source)
    frame = pl.DataFrame(
        {
            "instrument": [t.symbol for t in trades],
            "trade_key": [t.trade_key for t in trades],
            "trade_time": _ms([t.time_ms for t in trades]),
            "price": [t.price for t in trades],
            "quantity": [t.quantity for t in trades],
            "is_buyer_maker": [t.is_buyer_maker for t in trades],
            "source": [source] * len(trades),
        },
        schema_overrides={
            "instrument": _STR,
            "trade_key": _STR,
            "price": _F64,
            "quantity": _F64,
            "is_buyer_maker": pl.Boolean(),
            "source": _STR,
        },
    )
    return conform_feed("trades", frame).unique(["instrument", "trade_key"], keep="first")


# -- writers ------------------------------------------------------------------------------------


# Spacing needs the settlements around a row: two periods of the longest interval (8 h) on
# either side, with room to spare.
FUNDING_CONTEXT = timedelta(hours=24)


@dataclass(frozen=True)
class FundingWrite:
    """Outcome of :func:`store_funding_rates`.

    Attributes:
        written: Rows of the frame written.
        neighbours_updated: Stored rows around the frame whose interval became known (or more
            trusted) thanks to the new rows.
        unresolved: ``(instrument, funding_time)`` of the frame's rows whose interval stays
            unknown.
        conflicts: Premium-index intervals the settlement spacing contradicts.
    """

    written: int
    neighbours_updated: int
    unresolved: tuple[tuple[str, datetime], ...]
    conflicts: tuple[IntervalConflict, ...]


def _stored_funding(
    db: Database, instruments: list[str], lo: datetime, hi: datetime
) -> pl.DataFrame:
    schema, _, _ = _TABLES["funding_rates"]
    frame = read_frame(
        db,
        f"SELECT {', '.join(schema)} FROM funding_rates WHERE instrument = ANY($1) "
        "AND funding_time >= $2 AND funding_time <= $3",
        [instruments, lo, hi],
    )
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    return conform_feed("funding_rates", frame)


def _stated_intervals(
    db: Database, instruments: list[str], lo: datetime, hi: datetime
) -> pl.DataFrame:
    frame = read_frame(
        db,
        "SELECT instrument, snapshot_time, next_funding_time, funding_interval_hours "
        "FROM premium_index_snapshots WHERE instrument = ANY($1) AND next_funding_time >= $2 "
        "AND next_funding_time <= $3 AND funding_interval_hours IS NOT NULL",
        [instruments, lo, hi],
    )
    if frame.height == 0:
        return frame
    return frame.with_columns(
        pl.col("snapshot_time").cast(_TIME), pl.col("next_funding_time").cast(_TIME)
    )


def store_funding_rates(db: Database, frame: pl.DataFrame) -> FundingWrite:
    """Upsert funding rates on (instrument, funding_time), establishing each one's interval.

    The interval of every settlement is derived point in time from the row itself, the stored
    premium-index snapshots that named it and the spacing of the stored settlements around it
    (see :mod:`goldrl_dagster.lib.market.funding_intervals`); a stored interval is replaced
    only by one from a more trusted source, so a later history re-fetch (which never states the
    interval) cannot erase it. Stored neighbours whose interval the new rows establish are
    updated too.

    Args:
        db: The database.
        frame: A ``funding_rates`` frame.

    Returns:
        What was written and what stays unknown.
    """
    frame = conform_feed("funding_rates", frame)
    if frame.height == 0:
        return FundingWrite(0, 0, (), ())
    instruments = frame["instrument"].unique().sort().to_list()
    lo = frame["funding_time"].min() - FUNDING_CONTEXT  # type: ignore[operator]
    hi = frame["funding_time"].max() + FUNDING_CONTEXT  # type: ignore[operator]
    stored = _stored_funding(db, instruments, lo, hi)
    key = ["instrument", "funding_time"]
    fresh = _keep_trusted(frame, stored)
    others = stored.join(frame.select(key), on=key, how="anti")
    combined = pl.concat([fresh.select(stored.columns), others]).sort(key)
    derived = derive_funding_intervals(combined, _stated_intervals(db, instruments, lo, hi))
    result = derived.frame.with_columns(
        pl.struct(key).is_in(frame.select(pl.struct(key)).to_series().implode()).alias("new")
    )
    changed_neighbours = (
        result.filter(~pl.col("new"))
        .join(
            others.select(
                *key,
                pl.col("funding_interval_hours").alias("was_hours"),
                pl.col("funding_interval_source").alias("was"),
            ),
            on=key,
        )
        .filter(
            pl.col("funding_interval_source").ne_missing(pl.col("was"))
            | pl.col("funding_interval_hours").ne_missing(pl.col("was_hours"))
        )
    )
    rows = pl.concat(
        [
            result.filter(pl.col("new")).drop("new"),
            changed_neighbours.drop("new", "was", "was_hours"),
        ]
    )
    _write(db, "funding_rates", rows)
    new_keys = {(i, t) for i, t in frame.select(key).iter_rows()}
    return FundingWrite(
        written=frame.height,
        neighbours_updated=changed_neighbours.height,
        unresolved=tuple(u for u in derived.unresolved if u in new_keys),
        conflicts=tuple(c for c in derived.conflicts if (c.instrument, c.funding_time) in new_keys),
    )


def _rank(source: pl.Expr) -> pl.Expr:
    return source.replace_strict(
        {name: rank for rank, name in enumerate(INTERVAL_SOURCES)},
        default=len(INTERVAL_SOURCES),
        return_dtype=pl.Int32,
    )


def _keep_trusted(frame: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """New rows win on the rate; a more trusted stored interval wins over theirs."""
    key = ["instrument", "funding_time"]
    previous = stored.select(
        *key,
        pl.col("funding_interval_hours").alias("stored_hours"),
        pl.col("funding_interval_source").alias("stored_source"),
    )
    keep_stored = pl.col("stored_hours").is_not_null() & (
        pl.col("funding_interval_hours").is_null()
        | (_rank(pl.col("stored_source")) < _rank(pl.col("funding_interval_source")))
    )
    return (
        frame.join(previous, on=key, how="left")
        .with_columns(
            pl.when(keep_stored)
            .then(pl.col("stored_hours"))
            .otherwise(pl.col("funding_interval_hours"))
            .alias("funding_interval_hours"),
            pl.when(keep_stored)
            .then(pl.col("stored_source"))
            .otherwise(pl.col("funding_interval_source"))
            .alias("funding_interval_source"),
        )
        .select(frame.columns)
    )


def write_funding_rates(db: Database, frame: pl.DataFrame) -> int:
    """Upsert funding rates as given, never losing a more trusted stored interval.

    No interval is derived here (:func:`store_funding_rates` does that): a row whose stored
    interval comes from a more trusted source than the new row's (or the new row has none)
    keeps it, so a later history re-fetch (which never states the interval) cannot erase it.

    Returns:
        The number of rows written.
    """
    frame = conform_feed("funding_rates", frame)
    if frame.height == 0:
        return 0
    instruments = frame["instrument"].unique().sort().to_list()
    lo, hi = frame["funding_time"].min(), frame["funding_time"].max()
    stored = _stored_funding(db, instruments, lo, hi)  # type: ignore[arg-type]
    return _write(db, "funding_rates", _keep_trusted(frame, stored))


def write_premium_index(db: Database, frame: pl.DataFrame) -> int:
    """Upsert premium-index snapshots on (instrument, snapshot_time)."""
    return _write(db, "premium_index_snapshots", frame)


def write_open_interest(db: Database, frame: pl.DataFrame) -> int:
    """Upsert open-interest snapshots on (instrument, snapshot_time)."""
    return _write(db, "open_interest_snapshots", frame)


def write_tickers(db: Database, frame: pl.DataFrame) -> int:
    """Upsert 24 h ticker snapshots on (instrument, snapshot_time)."""
    return _write(db, "ticker_snapshots", frame)


def write_depth(db: Database, frame: pl.DataFrame) -> int:
    """Upsert order-book snapshots on (instrument, snapshot_time)."""
    return _write(db, "depth_snapshots", frame)


def write_trades(db: Database, frame: pl.DataFrame) -> int:
    """Insert trades not stored yet; a trade already stored (same key) is left as it was.

    Returns:
        The number of distinct trades in the frame (stored now or before).
    """
    frame = conform_feed("trades", frame).unique(["instrument", "trade_key"], keep="first")
    return _write(db, "trades", frame, update=False)


def write_mark_price_candles(db: Database, candles: pl.DataFrame) -> int:
    """Upsert mark-price candles (canonical candle frame) on (instrument, interval, open_time)."""
    return upsert_frame(db, "mark_price_candles", conform_candles(candles), CANDLE_KEY)


# -- readers ------------------------------------------------------------------------------------


def read_feed(
    db: Database, table: str, instrument: str, start: datetime, end: datetime
) -> pl.DataFrame:
    """Read one instrument's rows of a feed table with ``start <= time < end``, by key order.

    Args:
        db: The database.
        table: One of the feed tables (``funding_rates``, ``premium_index_snapshots``,
            ``open_interest_snapshots``, ``ticker_snapshots``, ``depth_snapshots``, ``trades``).
        instrument: Exchange symbol.
        start: Inclusive lower bound of the table's time column.
        end: Exclusive upper bound.

    Returns:
        A frame in the table's canonical schema.
    """
    if table not in _TABLES:
        raise ValueError(f"unknown feed table {table!r}; expected one of {sorted(_TABLES)}")
    schema, _, time_column = _TABLES[table]
    frame = read_frame(
        db,
        f"SELECT {', '.join(schema)} FROM {table} WHERE instrument = $1 "
        f"AND {time_column} >= $2 AND {time_column} < $3 ORDER BY {time_column}",
        [instrument, start, end],
    )
    if frame.height == 0:
        return pl.DataFrame(schema=schema)
    return conform_feed(table, frame).sort(time_column, maintain_order=True)


def read_mark_price_candles(
    db: Database, instrument: str, interval: str, start: datetime, end: datetime
) -> pl.DataFrame:
    """Read mark-price candles with ``start <= open_time < end`` as a canonical candle frame."""
    frame = read_frame(
        db,
        f"SELECT {', '.join(CANDLE_SCHEMA)} FROM mark_price_candles WHERE instrument = $1 "
        "AND interval = $2 AND open_time >= $3 AND open_time < $4 ORDER BY open_time",
        [instrument, interval, start, end],
    )
    return conform_candles(frame) if frame.height else empty_candles()


# -- data-quality findings ----------------------------------------------------------------------


def findings_frame(findings: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Build a ``data_quality_findings`` frame from dicts.

    Args:
        findings: Each with ``kind``, ``instrument``, ``at`` (aware datetime), ``severity``
            (info/warning/error), ``detail`` (JSON-serialisable mapping) and optionally
            ``interval`` (``""`` when none applies).

    Raises:
        ValueError: If a field is missing, a severity unknown or ``at`` naive.
    """
    rows = []
    for finding in findings:
        missing = [
            k for k in ("kind", "instrument", "at", "severity", "detail") if k not in finding
        ]
        if missing:
            raise ValueError(f"finding lacks {missing}: {finding!r}")
        if finding["severity"] not in SEVERITIES:
            raise ValueError(f"finding severity {finding['severity']!r} not in {SEVERITIES}")
        at = finding["at"]
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ValueError(f"finding time must be an aware datetime, got {at!r}")
        rows.append(
            {
                "kind": str(finding["kind"]),
                "instrument": str(finding["instrument"]),
                "interval": str(finding.get("interval") or ""),
                "at": at,
                "severity": finding["severity"],
                "detail": json.dumps(finding["detail"], sort_keys=True, default=str),
            }
        )
    if not rows:
        return pl.DataFrame(schema=FINDING_SCHEMA)
    return pl.DataFrame(rows).select([pl.col(c).cast(t) for c, t in FINDING_SCHEMA.items()])


_FINDING_KEY = ("kind", "instrument", "interval", "at")


def write_findings(db: Database, findings: Sequence[dict[str, Any]] | pl.DataFrame) -> int:
    """Record data-quality findings; a finding seen again updates its detail, never duplicates.

    Returns:
        The number of findings written.
    """
    frame = findings if isinstance(findings, pl.DataFrame) else findings_frame(findings)
    if frame.height == 0:
        return 0
    frame = frame.unique(list(_FINDING_KEY), keep="last", maintain_order=True)
    # Findings are few, and ADBC's binary COPY cannot fill a jsonb column from text: a plain
    # parameterised upsert in one transaction is the simple, atomic path here.
    with db.connect() as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO data_quality_findings "
                "(kind, instrument, interval, at, severity, detail) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb) "
                "ON CONFLICT (kind, instrument, interval, at) DO UPDATE SET "
                "severity = EXCLUDED.severity, detail = EXCLUDED.detail",
                frame.select(list(FINDING_SCHEMA)).rows(),
            )
        conn.commit()
    return frame.height


def read_findings(
    db: Database,
    *,
    kind: str | None = None,
    instrument: str | None = None,
    interval: str | None = None,
) -> pl.DataFrame:
    """Read data-quality findings (detail as JSON text), oldest first, optionally filtered."""
    clauses, params = [], []
    for column, value in (("kind", kind), ("instrument", instrument), ("interval", interval)):
        if value is not None:
            params.append(value)
            clauses.append(f"{column} = ${len(params)}")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    frame = read_frame(
        db,
        "SELECT kind, instrument, interval, at, severity, detail::text AS detail "
        f"FROM data_quality_findings {where} ORDER BY at, kind, instrument, interval",
        params,
    )
    if frame.height == 0:
        return pl.DataFrame(schema=FINDING_SCHEMA)
    return frame.select([pl.col(c).cast(t) for c, t in FINDING_SCHEMA.items()])
