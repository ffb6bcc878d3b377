"""Storage benchmarks: goldrl's bulk candle upsert and range read against naive baselines.

Each goldrl path is timed against the simplest correct alternative in the same process, on the
same server and the same data, so the ratio is meaningful even on a noisy machine:

* upsert: ``upsert_frame`` into ``candles`` vs psycopg row-by-row COPY (``write_row``) into a
  staging table plus one ``INSERT … ON CONFLICT DO UPDATE``; measured into an empty table
  (fresh) and again with the same rows (every key conflicts: the idempotent re-run case).
* read: ``market_store.read_candles`` (and the bare ``read_frame``) vs psycopg ``fetchall`` of
  tuples turned into a polars frame.

and against server-bound floors measured in the same process (issue 14, ``--floors``):

* fresh upsert vs a bare binary COPY of the same rows into the same empty table (payload
  encoded before the clock starts, one transaction): goal >= 0.9x;
* ``read_candles`` vs the server-only floor: the same query split in two halves, each
  ``COPY (…) TO '/dev/null' (FORMAT binary)`` on its own connection at the same time (the server
  serialises every row, no client decodes anything): goal 2M rows/s or >= 0.9x the floor.
  ``read_candles`` is timed with the day blocks an earlier read kept (every read but the first
  after a write); timed beside it, for reference: the first read (blocks deleted before the
  clock starts, so it builds and keeps them), the aggregated parts without blocks
  (``_read_candles_parts``) and the previous ADBC read (``_read_candles_arrow``).

Run::

    uv run python benchmarks/bench_storage.py --rows 1000000
    uv run python benchmarks/bench_storage.py --database-url postgresql://postgres@127.0.0.1/test
    uv run python benchmarks/bench_storage.py --floors-only --repeats 7

Without ``--database-url`` a fresh embedded PostgreSQL is started under a temporary
``GOLDRL_HOME`` and removed afterwards; with it, a throwaway schema is created and dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import psycopg
from psycopg import sql

from goldrl_dagster.lib.config import load_settings
from goldrl_dagster.lib.market.candles import CANDLE_KEY, CANDLE_SCHEMA, conform_candles
from goldrl_dagster.lib.storage import pg_binary
from goldrl_dagster.lib.storage.bulk import read_frame, upsert_frame
from goldrl_dagster.lib.storage.market_store import (
    _READ_COLUMNS,
    _read_candles_arrow,
    _read_candles_parts,
    read_candles,
)
from goldrl_dagster.lib.storage.migrations import migrate
from goldrl_dagster.lib.storage.server import Database, resolve_database, stop_embedded

INSTRUMENT = "XAUT-USDT"
INTERVAL = "1m"
T0 = datetime(2023, 1, 2, tzinfo=UTC)
UPSERT_TARGET_RATIO = 3.0
UPSERT_TARGET_RATE = 300_000.0
READ_TARGET_RATE = 2_000_000.0
FLOOR_TARGET_RATIO = 0.9
# The target of a row shown for comparison only: its "met" cell stays empty.
REFERENCE = "(reference)"


@dataclass(frozen=True)
class Result:
    """Timings of one case for goldrl and its baseline (seconds, one entry per repeat)."""

    case: str
    rows: int
    goldrl: list[float]
    baseline: list[float]
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        """Speed-up of goldrl over the baseline, best run against best run."""
        return min(self.baseline) / min(self.goldrl)

    @property
    def paired_ratio(self) -> float:
        """Median over repeats of baseline time / goldrl time, each pair run back to back."""
        return statistics.median(b / g for b, g in zip(self.baseline, self.goldrl, strict=True))

    def rate(self, times: list[float]) -> float:
        """Rows per second of the best run."""
        return self.rows / min(times)


def make_candles(rows: int, seed: int = 7) -> pl.DataFrame:
    """Return ``rows`` consecutive 1m candles of one instrument (a seeded random walk).

    Args:
        rows: Number of candles.
        seed: Seed of the price walk, so every run writes the same bytes.

    Returns:
        A canonical candle frame.
    """
    rng = np.random.default_rng(seed)
    close = 2000.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, rows)))
    open_ = np.concatenate([[2000.0], close[:-1]])
    spread = np.abs(rng.normal(0.0, 0.5, rows))
    frame = pl.DataFrame(
        {
            "instrument": pl.repeat(INSTRUMENT, rows, eager=True),
            "interval": pl.repeat(INTERVAL, rows, eager=True),
            "open_time": pl.datetime_range(
                T0, T0 + timedelta(minutes=rows - 1), "1m", time_zone="UTC", eager=True
            ),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.gamma(2.0, 5.0, rows),
            "source": pl.repeat("simulator", rows, eager=True),
        }
    )
    return conform_candles(frame)


def baseline_upsert(db: Database, frame: pl.DataFrame) -> None:
    """Upsert the naive way: row-by-row COPY into staging, then one INSERT … ON CONFLICT.

    Args:
        db: The database.
        frame: Canonical candles.
    """
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in CANDLE_KEY)
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
        for c in frame.columns
        if c not in CANDLE_KEY
    )
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE bench_staging ON COMMIT DROP AS "
                "SELECT {cols} FROM candles WITH NO DATA"
            ).format(cols=cols)
        )
        with cur.copy(sql.SQL("COPY bench_staging ({cols}) FROM STDIN").format(cols=cols)) as cp:
            for row in frame.iter_rows():
                cp.write_row(row)
        cur.execute(
            sql.SQL(
                "INSERT INTO candles ({cols}) SELECT {cols} FROM bench_staging "
                "ON CONFLICT ({keys}) DO UPDATE SET {updates}"
            ).format(cols=cols, keys=keys, updates=updates)
        )
        conn.commit()


def baseline_read(db: Database, start: datetime, end: datetime) -> pl.DataFrame:
    """Read a candle range the naive way: psycopg ``fetchall`` of tuples into polars.

    Args:
        db: The database.
        start: Inclusive start of the range.
        end: Exclusive end of the range.

    Returns:
        The candles as a frame with the canonical schema.
    """
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT {', '.join(CANDLE_SCHEMA)} FROM candles WHERE instrument = %s "
            "AND interval = %s AND open_time >= %s AND open_time < %s ORDER BY open_time",
            (INSTRUMENT, INTERVAL, start, end),
        ).fetchall()
    return pl.DataFrame(rows, schema=CANDLE_SCHEMA, orient="row")


def _admin(db: Database, statement: str) -> None:
    with db.connect(autocommit=True) as conn:
        conn.execute(statement)


def _settle(db: Database) -> None:
    """Flush dirty buffers outside the timed region so one run's writes don't bill the next."""
    with contextlib.suppress(psycopg.Error):  # CHECKPOINT needs superuser or pg_checkpoint
        _admin(db, "CHECKPOINT")


def _reset(db: Database) -> None:
    _admin(db, "TRUNCATE candles")
    _settle(db)


def _vacuum(db: Database) -> None:
    # A long-lived table is vacuumed (hint bits, visibility map) before a re-run touches it.
    _admin(db, "VACUUM (ANALYZE) candles")
    _settle(db)


def _count(db: Database) -> int:
    with db.connect() as conn:
        row = conn.execute("SELECT count(*) FROM candles").fetchone()
    assert row is not None
    return int(row[0])


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_upsert(db: Database, frame: pl.DataFrame, repeats: int) -> list[Result]:
    """Time fresh and all-conflict upserts of ``frame`` for goldrl and the baseline.

    Args:
        db: A migrated database (its ``candles`` table is truncated).
        frame: Canonical candles.
        repeats: Runs per case.

    Returns:
        The fresh-insert and re-upsert results.
    """
    methods: dict[str, Callable[[], object]] = {
        "goldrl": lambda: upsert_frame(db, "candles", frame, CANDLE_KEY),
        "baseline": lambda: baseline_upsert(db, frame),
    }
    fresh: dict[str, list[float]] = {m: [] for m in methods}
    again: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            _reset(db)
            fresh[name].append(_timed(run))
            if _count(db) != frame.height:
                raise AssertionError(f"{name} fresh upsert stored a wrong row count")
            _vacuum(db)
            again[name].append(_timed(run))
            if _count(db) != frame.height:
                raise AssertionError(f"{name} re-upsert stored a wrong row count")
    results = []
    for case, times in (("upsert into empty table", fresh), ("re-upsert same rows", again)):
        rate = frame.height / min(times["goldrl"])
        ratio = min(times["baseline"]) / min(times["goldrl"])
        results.append(
            Result(
                case=case,
                rows=frame.height,
                goldrl=times["goldrl"],
                baseline=times["baseline"],
                target=f">= {UPSERT_TARGET_RATIO:g}x and >= {UPSERT_TARGET_RATE:,.0f} rows/s",
                met=ratio >= UPSERT_TARGET_RATIO and rate >= UPSERT_TARGET_RATE,
            )
        )
    return results


def bench_read(db: Database, frame: pl.DataFrame, repeats: int) -> list[Result]:
    """Time a range read of every stored candle for goldrl and the baseline.

    Args:
        db: A migrated database; ``frame`` is written into its ``candles`` table first.
        frame: Canonical candles (one instrument and interval).
        repeats: Runs per case.

    Returns:
        The ``read_candles`` and ``read_frame`` results.
    """
    _reset(db)
    upsert_frame(db, "candles", frame, CANDLE_KEY)
    _vacuum(db)
    start = frame["open_time"].min()
    end = frame["open_time"].max() + timedelta(minutes=1)
    assert isinstance(start, datetime)
    query = (
        f"SELECT {', '.join(CANDLE_SCHEMA)} FROM candles WHERE instrument = $1 AND interval = $2 "
        "AND open_time >= $3 AND open_time < $4 ORDER BY open_time"
    )
    params = [INSTRUMENT, INTERVAL, start, end]
    # Correctness first: a fast read that returns other bytes would be a meaningless number.
    if not read_candles(db, INSTRUMENT, INTERVAL, start, end).equals(frame):
        raise AssertionError("read_candles did not return the written candles")
    if not baseline_read(db, start, end).equals(frame):
        raise AssertionError("baseline read did not return the written candles")
    methods: dict[str, Callable[[], object]] = {
        "read_candles": lambda: read_candles(db, INSTRUMENT, INTERVAL, start, end),
        "read_frame": lambda: read_frame(db, query, params),
        "baseline": lambda: baseline_read(db, start, end),
    }
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(repeats):
        for name, run in methods.items():
            times[name].append(_timed(run))
    results = []
    for name in ("read_candles", "read_frame"):
        rate = frame.height / min(times[name])
        results.append(
            Result(
                case=f"range read via {name}",
                rows=frame.height,
                goldrl=times[name],
                baseline=times["baseline"],
                target=f">= {READ_TARGET_RATE:,.0f} rows/s",
                met=rate >= READ_TARGET_RATE,
            )
        )
    return results


def bare_copy(db: Database, columns: list[str], payload: list[bytes]) -> None:
    """COPY an already-encoded binary payload into ``candles``: the server's share of a write.

    Args:
        db: The database.
        columns: The payload's column order.
        payload: The payload's chunks (header, rows, trailer).
    """
    with db.connect() as conn, conn.cursor() as cur:
        statement = sql.SQL("COPY candles ({cols}) FROM STDIN (FORMAT binary)").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        with cur.copy(statement) as copy:
            for chunk in payload:
                copy.write(chunk)
        conn.commit()


def server_only_read(db: Database, start: datetime, end: datetime) -> None:
    """The read's server floor: both halves ``COPY … TO '/dev/null'`` on two connections at once.

    Args:
        db: The database.
        start: Inclusive start of the range.
        end: Exclusive end of the range.
    """
    middle = start + (end - start) / 2

    def half(low: datetime, high: datetime) -> None:
        query = sql.SQL(
            "COPY (SELECT {cols} FROM candles WHERE instrument = {i} AND interval = {iv} "
            "AND open_time >= {lo} AND open_time < {hi} ORDER BY open_time) "
            "TO '/dev/null' (FORMAT binary)"
        ).format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in _READ_COLUMNS),
            i=sql.Literal(INSTRUMENT),
            iv=sql.Literal(INTERVAL),
            lo=sql.Literal(low),
            hi=sql.Literal(high),
        )
        with db.connect() as conn:
            conn.execute(query)

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda bounds: half(*bounds), [(start, middle), (middle, end)]))


def bench_floors(db: Database, frame: pl.DataFrame, repeats: int) -> list[Result]:
    """Time the fresh upsert and the range read against their server-bound floors.

    Each repeat runs goldrl and its floor back to back (alternating which goes first), so
    both see the same load; the ratio is floor time / goldrl time (1.0 = no client overhead).

    Args:
        db: A migrated database (its ``candles`` table is truncated).
        frame: Canonical candles (one instrument and interval).
        repeats: Runs per case.

    Returns:
        The upsert-vs-bare-COPY, read-vs-server-floor and previous-read results.
    """
    with db.connect() as conn:
        types = dict(
            conn.execute(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'candles'::regclass AND attnum > 0 AND NOT attisdropped"
            ).fetchall()
        )
    plan = pg_binary.copy_plan(frame.schema, types)
    assert plan is not None
    columns, chunks = pg_binary.encode_copy(frame, plan)
    payload = [bytes(chunk) for chunk in chunks]
    upsert: dict[str, list[float]] = {"goldrl": [], "floor": []}
    runs: dict[str, Callable[[], object]] = {
        "goldrl": lambda: upsert_frame(db, "candles", frame, CANDLE_KEY),
        "floor": lambda: bare_copy(db, columns, payload),
    }
    for index in range(repeats):
        order = ["goldrl", "floor"] if index % 2 == 0 else ["floor", "goldrl"]
        for name in order:
            _reset(db)
            upsert[name].append(_timed(runs[name]))
            if _count(db) != frame.height:
                raise AssertionError(f"{name} stored a wrong row count")
    _vacuum(db)
    start = frame["open_time"].min()
    end = frame["open_time"].max() + timedelta(minutes=1)
    assert isinstance(start, datetime) and isinstance(end, datetime)
    if not read_candles(db, INSTRUMENT, INTERVAL, start, end).equals(frame):
        raise AssertionError("read_candles did not return the written candles")
    expected = (end - start).total_seconds() / 60
    read: dict[str, list[float]] = {"goldrl": [], "floor": [], "adbc": [], "cold": [], "parts": []}
    reads: dict[str, Callable[[], object]] = {
        # day blocks kept by an earlier read: what every read after the first one pays
        "goldrl": lambda: read_candles(db, INSTRUMENT, INTERVAL, start, end),
        "floor": lambda: server_only_read(db, start, end),
        "adbc": lambda: _read_candles_arrow(db, INSTRUMENT, INTERVAL, start, end, expected),
        # the first read after the days were written: it builds and keeps the blocks
        "cold": lambda: read_candles(db, INSTRUMENT, INTERVAL, start, end),
        # the aggregated parts without blocks (the read before the blocks)
        "parts": lambda: _read_candles_parts(db, INSTRUMENT, INTERVAL, start, end),
    }
    for index in range(repeats):
        names = list(reads)
        for name in names[index % len(names) :] + names[: index % len(names)]:
            if name == "cold":
                _admin(db, "DELETE FROM candle_blocks")  # before the clock starts
            read[name].append(_timed(reads[name]))
    # Under load single timings swing by ±50 %: the goal is judged on the paired median.
    fresh_ratio = statistics.median(
        f / g for f, g in zip(upsert["floor"], upsert["goldrl"], strict=True)
    )
    read_ratio = statistics.median(
        f / g for f, g in zip(read["floor"], read["goldrl"], strict=True)
    )
    read_rate = frame.height / min(read["goldrl"])
    return [
        Result(
            case="upsert into empty table vs bare binary COPY (floor)",
            rows=frame.height,
            goldrl=upsert["goldrl"],
            baseline=upsert["floor"],
            target=f">= {FLOOR_TARGET_RATIO:g}x the floor (paired median)",
            met=fresh_ratio >= FLOOR_TARGET_RATIO,
        ),
        Result(
            case="range read via read_candles vs server-only floor",
            rows=frame.height,
            goldrl=read["goldrl"],
            baseline=read["floor"],
            target=f">= {READ_TARGET_RATE:,.0f} rows/s or >= {FLOOR_TARGET_RATIO:g}x the floor",
            # rows/s of the best run, or the paired median ratio
            met=read_rate >= READ_TARGET_RATE or read_ratio >= FLOOR_TARGET_RATIO,
        ),
        Result(
            case="first read, building the day blocks, vs server-only floor",
            rows=frame.height,
            goldrl=read["cold"],
            baseline=read["floor"],
            target=REFERENCE,
            met=True,
        ),
        Result(
            case="aggregated parts without day blocks vs server-only floor",
            rows=frame.height,
            goldrl=read["parts"],
            baseline=read["floor"],
            target=REFERENCE,
            met=True,
        ),
        Result(
            case="previous ADBC range read vs server-only floor",
            rows=frame.height,
            goldrl=read["adbc"],
            baseline=read["floor"],
            target=REFERENCE,
            met=True,  # no target: never fails the run
        ),
    ]


@contextlib.contextmanager
def bench_database(database_url: str | None) -> Iterator[Database]:
    """Yield a migrated throwaway database: a fresh embedded server, or a schema on ``url``.

    Args:
        database_url: External PostgreSQL URL, or None for a fresh embedded server.

    Yields:
        The database; everything created for it is removed on exit.
    """
    saved = {k: os.environ.get(k) for k in ("GOLDRL_HOME", "GOLDRL_DATABASE_URL", "GOLDRL_SCHEMA")}
    home = tempfile.mkdtemp(prefix="goldrl_bench_")
    os.environ["GOLDRL_HOME"] = home
    if database_url:
        os.environ["GOLDRL_DATABASE_URL"] = database_url
        os.environ["GOLDRL_SCHEMA"] = f"goldrl_bench_{uuid.uuid4().hex[:8]}"
    else:
        os.environ.pop("GOLDRL_DATABASE_URL", None)
        os.environ.pop("GOLDRL_SCHEMA", None)
    settings = load_settings()
    db = resolve_database(settings)
    try:
        migrate(db)
        yield db
    finally:
        if db.embedded:
            stop_embedded(settings)
        else:
            _admin(db, f"DROP SCHEMA IF EXISTS {db.schema} CASCADE")
        shutil.rmtree(home, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _server_version(db: Database) -> str:
    with db.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def render(results: list[Result]) -> str:
    """Format results as a markdown table.

    Args:
        results: Benchmark results.

    Returns:
        The table, one row per case.
    """
    lines = [
        "| case | rows | goldrl best / median s | goldrl rows/s | baseline best / median s "
        "| baseline rows/s | speed-up | paired median | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        met = "" if r.target == REFERENCE else ("yes" if r.met else "NO")
        lines.append(
            f"| {r.case} | {r.rows:,} "
            f"| {min(r.goldrl):.2f} / {statistics.median(r.goldrl):.2f} "
            f"| {r.rate(r.goldrl):,.0f} "
            f"| {min(r.baseline):.2f} / {statistics.median(r.baseline):.2f} "
            f"| {r.rate(r.baseline):,.0f} | {r.ratio:.2f}x | {r.paired_ratio:.2f}x | {r.target} "
            f"| {met} |"
        )
    return "\n".join(lines)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main(argv: list[str] | None = None) -> int:
    """Run the storage benchmarks and print a markdown report.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv``).

    Returns:
        0 when every target was met, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="candles per case")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (best is used)")
    parser.add_argument(
        "--database-url", default=None, help="external PostgreSQL (a throwaway schema is used)"
    )
    parser.add_argument(
        "--floors-only",
        action="store_true",
        help="only the cases against server-bound floors (bare COPY, COPY TO /dev/null)",
    )
    args = parser.parse_args(argv)
    if args.rows < 2 or args.repeats < 1:
        parser.error("--rows must be >= 2 and --repeats >= 1")
    frame = make_candles(args.rows)
    load_before = _load()
    with bench_database(args.database_url) as db:
        server = f"PostgreSQL {_server_version(db)} ({'embedded' if db.embedded else 'external'})"
        results = [] if args.floors_only else bench_upsert(db, frame, args.repeats)
        if not args.floors_only:
            results += bench_read(db, frame, args.repeats)
        results += bench_floors(db, frame, args.repeats)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        f", {server}\nload average before / after: {load_before} / {_load()}\n"
        f"repeats: {args.repeats}; speed-up = baseline best / goldrl best "
        "(for the floor cases: floor best / goldrl best)\n"
    )
    print(render(results))
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
