"""Reads and writes of market data: versioned instrument metadata and candles."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict
from datetime import UTC, datetime

import polars as pl

from goldrl_dagster.lib.market.candles import (
    CANDLE_KEY,
    CANDLE_SCHEMA,
    INTERVAL_MS,
    conform_candles,
)
from goldrl_dagster.lib.market.exchange_bars import FILLED_SCHEMA, fill_from_exchange
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.storage.bulk import read_frame, read_frames_consistent, upsert_frame
from goldrl_dagster.lib.storage.candle_blocks import read_candle_blocks
from goldrl_dagster.lib.storage.columnar_read import read_columns
from goldrl_dagster.lib.storage.server import Database

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPEC_COLUMNS = (
    "contract_id", "asset", "display_name", "currency", "price_precision", "quantity_precision",
    "contract_size", "min_quantity", "min_notional", "maker_fee_rate", "taker_fee_rate",
    "max_long_leverage", "max_short_leverage", "status", "launch_time",
)  # fmt: skip


def sync_instruments(
    db: Database, specs: list[InstrumentSpec], source: str, now: datetime | None = None
) -> list[str]:
    """Store contract metadata as validity-stamped versions.

    A symbol whose trading rules changed gets a new row valid from ``now`` and its previous row
    is closed at ``now``, so a backtest can ask for the rules valid at any past time.

    Args:
        db: The database.
        specs: Current contract metadata from the exchange.
        source: Where the metadata came from (``bingx_rest`` or ``simulator``).
        now: Validity timestamp of new versions (defaults to the current time).

    Returns:
        The symbols for which a new version was written.

    Raises:
        ValueError: If a changed symbol's current version is not older than ``now`` (the clock
            went backwards: versions must follow each other in time).
    """
    now = now or datetime.now(UTC)
    changed: list[str] = []
    with db.connect() as conn:
        for spec in specs:
            digest = spec.content_sha256()
            current = conn.execute(
                "SELECT content_sha256, valid_from FROM instruments "
                "WHERE symbol = %s AND valid_to IS NULL FOR UPDATE",
                (spec.symbol,),
            ).fetchone()
            if current is not None and current[0] == digest:
                continue
            if current is not None and current[1] >= now:
                conn.rollback()
                raise ValueError(
                    f"{spec.symbol}: rules changed but the current version is valid from "
                    f"{current[1].isoformat()}, not before {now.isoformat()}; "
                    "a new version must start after it"
                )
            conn.execute(
                "UPDATE instruments SET valid_to = %s WHERE symbol = %s AND valid_to IS NULL",
                (now, spec.symbol),
            )
            # The first version seen is taken as valid since listing, so backtests over history
            # find rules; later changes are only known from the moment they were observed.
            valid_from = now if current is not None else (spec.launch_time or _EPOCH)
            values = asdict(spec)
            conn.execute(
                f"INSERT INTO instruments (symbol, valid_from, {', '.join(_SPEC_COLUMNS)}, "
                "source, content_sha256, raw) VALUES (%s, %s, "
                f"{', '.join(['%s'] * len(_SPEC_COLUMNS))}, %s, %s, %s)",
                (
                    spec.symbol,
                    valid_from,
                    *(values[c] for c in _SPEC_COLUMNS),
                    source,
                    digest,
                    json.dumps(spec.raw, sort_keys=True),
                ),
            )
            changed.append(spec.symbol)
        conn.commit()
    return changed


def instrument_versions(db: Database, symbol: str) -> list[tuple[datetime, datetime | None, str]]:
    """Every stored version of a contract's rules, oldest first.

    Returns:
        ``(valid_from, valid_to, content_sha256)`` per version (``valid_to`` None: current).
    """
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT valid_from, valid_to, content_sha256 FROM instruments WHERE symbol = %s "
            "ORDER BY valid_from",
            (symbol,),
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def instrument_at(db: Database, symbol: str, at: datetime | None = None) -> InstrumentSpec:
    """Return the contract metadata valid at a time (the current version by default).

    Raises:
        LookupError: If no metadata for the symbol was valid then (run the instruments asset).
    """
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT symbol, {', '.join(_SPEC_COLUMNS)}, raw FROM instruments "
            "WHERE symbol = %s AND valid_from <= %s AND (valid_to IS NULL OR valid_to > %s) "
            "ORDER BY valid_from DESC LIMIT 1",
            (symbol, at or datetime.now(UTC), at or datetime.now(UTC)),
        ).fetchone()
    if row is None:
        raise LookupError(
            f"no contract metadata for {symbol} valid at {at or 'now'}; "
            "materialize the market/instruments asset first"
        )
    fields = dict(zip(("symbol", *_SPEC_COLUMNS, "raw"), row, strict=True))
    return InstrumentSpec(**fields)


def write_candles(db: Database, candles: pl.DataFrame) -> int:
    """Idempotently upsert canonical candles (same key → row replaced).

    Returns:
        The number of rows written.
    """
    return upsert_frame(db, "candles", conform_candles(candles), CANDLE_KEY)


# Above this many expected bars a range read is split across two connections (one snapshot):
# PostgreSQL runs each query on one core, so one connection caps the read rate.
_SPLIT_READ_BARS = 100_000
# Expected bars per aggregated part: the server aggregates one part while the client receives
# another (and a part stays far below the server's 1 GB value limit).
_PART_BARS = 250_000
_MAX_PARTS = 64
_READ_COLUMNS = [c for c in CANDLE_SCHEMA if c not in ("instrument", "interval")]


def read_candles(
    db: Database, instrument: str, interval: str, start: datetime, end: datetime
) -> pl.DataFrame:
    """Read candles with ``start <= open_time < end`` as a canonical frame, sorted by time.

    Ranges of two or more whole completed UTC days go through day blocks
    (:mod:`candle_blocks`: the days' aggregates kept until a write changes the day). Otherwise,
    or when blocks cannot be decoded exactly, the rows come as whole columns
    (``columnar_read.read_columns``: one binary array per column, decoded by numpy views), large
    ranges as parts read in parallel on two connections from one
    consistent snapshot. Should that not be exact (a NULL, an exotic server), the rows are read
    over ADBC instead. The instrument and interval columns are fixed by the query, so they are
    added client-side instead of being serialised a million times by the server.
    """
    blocks = read_candle_blocks(db, instrument, interval, start, end)
    if blocks is not None and blocks.frame is not None:
        return _canonical(blocks.frame, instrument, interval)
    return _read_candles_parts(db, instrument, interval, start, end)


def _read_candles_parts(
    db: Database, instrument: str, interval: str, start: datetime, end: datetime
) -> pl.DataFrame:
    """``read_candles`` without day blocks: the range aggregated in parts (or over ADBC)."""
    step_ms = INTERVAL_MS.get(interval)
    expected = (end - start).total_seconds() * 1000 / step_ms if step_ms else 0
    count = 1
    if expected > _SPLIT_READ_BARS:
        count = min(_MAX_PARTS, max(2, math.ceil(expected / _PART_BARS)))
    bounds = [start + (end - start) * i / count for i in range(count)] + [end]
    frame = read_columns(
        db,
        "candles",
        {c: CANDLE_SCHEMA[c] for c in _READ_COLUMNS},
        "instrument = %s AND interval = %s AND open_time >= %s AND open_time < %s",
        [[instrument, interval, low, high] for low, high in itertools.pairwise(bounds)],
        "open_time",
    )
    if frame is None:
        frame = _read_candles_arrow(db, instrument, interval, start, end, expected)
    return _canonical(frame, instrument, interval)


def _canonical(frame: pl.DataFrame, instrument: str, interval: str) -> pl.DataFrame:
    """The read columns with the series key added, as a canonical candle frame."""
    if frame.height == 0:
        return pl.DataFrame(schema=CANDLE_SCHEMA)
    # Already sorted by the query and of one instrument/interval: cast in place, no re-sort.
    return frame.select(
        pl.lit(instrument, CANDLE_SCHEMA["instrument"]).alias("instrument"),
        pl.lit(interval, CANDLE_SCHEMA["interval"]).alias("interval"),
        *(pl.col(c).cast(CANDLE_SCHEMA[c]) for c in _READ_COLUMNS),
    ).set_sorted("open_time")


def _read_candles_arrow(
    db: Database, instrument: str, interval: str, start: datetime, end: datetime, expected: float
) -> pl.DataFrame:
    """The same rows over ADBC (binary COPY per row → Arrow), halves in parallel if large."""
    query = (
        f"SELECT {', '.join(_READ_COLUMNS)} FROM candles WHERE instrument = $1 "
        "AND interval = $2 AND open_time >= $3 AND open_time < $4 ORDER BY open_time"
    )
    if expected > _SPLIT_READ_BARS:
        middle = start + (end - start) / 2
        parts = read_frames_consistent(
            db,
            [
                (query, [instrument, interval, start, middle]),
                (query, [instrument, interval, middle, end]),
            ],
        )
        return pl.concat(parts)
    return read_frame(db, query, [instrument, interval, start, end])


def write_exchange_candles(db: Database, candles: pl.DataFrame) -> int:
    """Idempotently upsert the exchange's own higher-interval bars (``exchange_candles``).

    Returns:
        The number of rows written.

    Raises:
        ValueError: If the frame holds 1m bars (the base belongs in ``candles``).
    """
    frame = conform_candles(candles)
    if frame.filter(pl.col("interval") == "1m").height:
        raise ValueError("exchange_candles holds intervals above 1m; 1m bars go to candles")
    return upsert_frame(db, "exchange_candles", frame, CANDLE_KEY)


def read_exchange_candles(
    db: Database, instrument: str, interval: str, start: datetime, end: datetime
) -> pl.DataFrame:
    """The exchange's bars with ``start <= open_time < end`` as a canonical frame."""
    frame = read_frame(
        db,
        f"SELECT instrument, interval, {', '.join(_READ_COLUMNS)} FROM exchange_candles "
        "WHERE instrument = $1 AND interval = $2 AND open_time >= $3 AND open_time < $4 "
        "ORDER BY open_time",
        [instrument, interval, start, end],
    )
    return conform_candles(frame) if frame.height else pl.DataFrame(schema=CANDLE_SCHEMA)


def read_candles_with_exchange(
    db: Database, instrument: str, interval: str, start: datetime, end: datetime
) -> pl.DataFrame:
    """Canonical candles completed by the exchange's bars where no canonical bar exists.

    For long horizons that reach before the exchange's 1m history: every bucket comes from
    ``candles`` when it is there (aggregated from 1m: canonical), else from
    ``exchange_candles``. The ``origin`` column says which (``canonical`` / ``exchange``).

    Returns:
        A frame of canonical candle columns plus ``origin``, sorted by time.
    """
    canonical = read_candles(db, instrument, interval, start, end)
    if interval == "1m":
        return canonical.with_columns(pl.lit("canonical").alias("origin")).cast(FILLED_SCHEMA)
    exchange = read_exchange_candles(db, instrument, interval, start, end)
    return fill_from_exchange(canonical, exchange)
