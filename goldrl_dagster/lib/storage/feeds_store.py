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
from datetime import datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from goldrl_dagster.lib.market.candles import (
    CANDLE_KEY,
    CANDLE_SCHEMA,
    SOURCES,
    conform_candles,
    empty_candles,
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
    return out.sort(list(key))


def _write(db: Database, table: str, frame: pl.DataFrame, *, update: bool = True) -> int:
    _, key, _ = _TABLES[table]
    return upsert_frame(db, table, conform_feed(table, frame), key, update=update)


# -- builders from client records ---------------------------------------------------------------


def funding_frame(rates: Sequence[FundingRate], source: str) -> pl.DataFrame:
    """Build a ``funding_rates`` frame from funding-history records.

    The interval is left null: the history endpoint does not report it, and goldrl never
    assumes 8 h. Use :func:`with_funding_interval` when the premium index states it.
    """
    _check_source(source)
    return conform_feed(
        "funding_rates",
        pl.DataFrame(
            {
                "instrument": [r.symbol for r in rates],
                "funding_time": _ms([r.funding_time_ms for r in rates]),
                "funding_rate": [r.funding_rate for r in rates],
                "funding_interval_hours": pl.Series([None] * len(rates), dtype=pl.Int32),
                "source": [source] * len(rates),
            },
            schema_overrides={"instrument": _STR, "funding_rate": _F64, "source": _STR},
        ),
    )


def with_funding_interval(frame: pl.DataFrame, hours: int | None) -> pl.DataFrame:
    """Stamp the exchange-reported funding interval on rows that have none.

    Args:
        frame: A ``funding_rates`` frame.
        hours: The interval the exchange reported (``fundingIntervalHours``), or None.

    Raises:
        ValueError: If ``hours`` is not a positive integer.
    """
    if hours is None:
        return frame
    if isinstance(hours, bool) or not isinstance(hours, int) or hours <= 0:
        raise ValueError(f"funding interval must be a positive number of hours, got {hours!r}")
    return frame.with_columns(
        pl.col("funding_interval_hours").fill_null(pl.lit(hours, dtype=pl.Int32))
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


def write_funding_rates(db: Database, frame: pl.DataFrame) -> int:
    """Upsert funding rates on (instrument, funding_time).

    A row whose stored interval is known keeps it when the new row's interval is null, so a
    later history re-fetch (which never states the interval) cannot erase it.

    Returns:
        The number of rows written.
    """
    frame = conform_feed("funding_rates", frame)
    if frame.height == 0:
        return 0
    known = read_frame(
        db,
        "SELECT instrument, funding_time, funding_interval_hours AS known_hours "
        "FROM funding_rates WHERE instrument = ANY($1) AND funding_time >= $2 "
        "AND funding_time <= $3 AND funding_interval_hours IS NOT NULL",
        [
            frame["instrument"].unique().to_list(),
            frame["funding_time"].min(),
            frame["funding_time"].max(),
        ],
    )
    if known.height:
        frame = (
            frame.join(
                known.with_columns(
                    pl.col("funding_time").cast(_TIME), pl.col("known_hours").cast(pl.Int32)
                ),
                on=["instrument", "funding_time"],
                how="left",
            )
            .with_columns(pl.col("funding_interval_hours").fill_null(pl.col("known_hours")))
            .drop("known_hours")
        )
    return _write(db, "funding_rates", frame)


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
