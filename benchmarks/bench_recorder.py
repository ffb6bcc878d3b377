"""Recorder benchmark: a busy hour replayed through the simulator, stored without loss?

The simulator's trade tape is made busy (``--trades-per-second``, default 50 on average per
symbol: a Poisson count per minute placed at random milliseconds, so single seconds burst
higher) and run at ``--speed`` (virtual seconds per real second) for ``--minutes`` virtual
minutes, with one disconnect of every stream in the middle (``--drops``). The simulator runs
in a child process (its own interpreter, as the exchange would be), and the same seeded tape is
rebuilt here to count what it printed. ``goldrl record``'s :class:`Recorder` records both gold
contracts on every channel into a fresh database.

Reported:

* **loss**: trades stored / trades the exchange printed in the recorded window (the
  simulator's tape, which is exact), with duplicates offered and removed; 100 % is the target;
* **write rate**: rows written per second of wall time (what the recorder sustained) and per
  second spent writing (the write path's capacity);
* **baseline**: the same rows written again in one batch by the recorder's path
  (:meth:`StreamStore.write`: a straight COPY when no key is stored yet) into emptied tables
  vs a bare ``COPY`` of the same rows into the same emptied tables (same indexes, no conflict
  handling), and the same rows written a second time (every key stored: the COPY fails, the
  batch goes through staging and ``ON CONFLICT DO NOTHING``, nothing is written); best of
  three each, in the same process and database.

Run::

    uv run python benchmarks/bench_recorder.py                      # 60 virtual min at 30x
    uv run python benchmarks/bench_recorder.py --minutes 10 --speed 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_storage import bench_database

import goldrl_dagster.lib.bingx.simulator.feeds as sim_feeds
from goldrl_dagster.lib.bingx.simulator.feeds import SimulatedFeeds
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS, SimulatedMarket
from goldrl_dagster.lib.recorder.service import Recorder, RecorderConfig
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import STREAM_TABLES, StreamStore

SYMBOLS = ("XAUT-USDT", "PAXG-USDT")
SEED = 5


def _stored_vs_sent(db: Database, feeds: SimulatedFeeds) -> dict[str, tuple[int, int, int]]:
    """Per symbol: (stored, sent in the stored window, stored but never sent)."""
    out = {}
    with db.connect() as conn:
        for symbol in SYMBOLS:
            stored = conn.execute(
                "SELECT (extract(epoch FROM time) * 1000)::bigint, price, quantity, "
                "is_buyer_maker FROM stream_trades WHERE symbol = %s ORDER BY time",
                (symbol,),
            ).fetchall()
            if not stored:
                out[symbol] = (0, 0, 0)
                continue
            first, last = stored[0][0], stored[-1][0]
            sent = {
                (t.time_ms, t.price, t.quantity, t.is_buyer_maker)
                for t in feeds.trades_between(symbol, first - 1, last)
            }
            extra = sum(1 for row in stored if tuple(row) not in sent)
            out[symbol] = (len(stored), len(sent), extra)
    return out


def _rows_of(db: Database) -> dict[str, list[tuple]]:
    with db.connect() as conn:
        return {
            t: conn.execute(
                sql.SQL("SELECT {} FROM {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(t)
                )
            ).fetchall()
            for t, cols in STREAM_TABLES.items()
        }


def _empty(db: Database) -> None:
    with db.connect() as conn:
        conn.execute("TRUNCATE " + ", ".join(STREAM_TABLES))
        conn.execute("CHECKPOINT")
        conn.commit()


def _bare_copy(db: Database, table_rows: dict[str, list[tuple]]) -> float:
    """Seconds of a bare COPY of the rows straight into the (empty) tables, one transaction."""
    with db.connect() as conn:
        started = time.perf_counter()
        with conn.cursor() as cur:
            for table, rows in table_rows.items():
                cols = STREAM_TABLES[table]
                json_at = [i for i, c in enumerate(cols) if c in ("bids", "asks")]
                names = sql.SQL(", ").join(map(sql.Identifier, cols))
                copy = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)
                with cur.copy(copy) as cp:
                    for row in rows:
                        if json_at:
                            row = list(row)
                            for i in json_at:
                                row[i] = json.dumps(row[i])
                        cp.write_row(row)
        conn.commit()
        return time.perf_counter() - started


def _baseline(db: Database, table_rows: dict[str, list[tuple]]) -> tuple[float, float, float, int]:
    """Best of three: the recorder's write path (fresh, then again), a bare COPY, same rows.

    The bare COPY writes straight into the target tables (same indexes, same WAL) with no
    conflict handling: the ratio is what idempotent batches cost.
    """
    n = sum(len(r) for r in table_rows.values())
    recorder, again, bare = [], [], []
    with StreamStore(db) as store:  # opening it creates the staging tables, outside the timing
        for _ in range(3):
            _empty(db)
            started = time.perf_counter()
            store.write(table_rows)
            recorder.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert not any(store.write(table_rows).values())  # every row stored already
            again.append(time.perf_counter() - started)
            _empty(db)
            bare.append(_bare_copy(db, table_rows))
    return min(recorder), min(again), min(bare), n


@dataclass
class _RemoteSim:
    """The simulator served by a child process (its own GIL) and the same seeded tape here."""

    base_url: str
    ws_url: str
    feeds: SimulatedFeeds
    process: subprocess.Popen

    def drop_connections(self) -> None:
        """Ask the child to drop every WebSocket connection."""
        assert self.process.stdin is not None
        self.process.stdin.write("drop\n")
        self.process.stdin.flush()


_CHILD = """
import sys
import goldrl_dagster.lib.bingx.simulator.feeds as sim_feeds
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
sim_feeds._TRADES_PER_MINUTE = {per_minute!r}
with SimulatorServer(seed={seed}, speed={speed!r}, anchor_ms={anchor}, push_interval=0.1,
                     rate_limits=None) as sim:
    print(sim.port, flush=True)
    for line in sys.stdin:
        if line.strip() == "drop":
            sim.drop_connections()
"""


@contextlib.contextmanager
def _simulator(args: argparse.Namespace, anchor: int) -> Iterator[_RemoteSim]:
    """Start the busy simulator in a child process; stop it on exit."""
    code = _CHILD.format(
        per_minute=args.trades_per_second * 60.0, seed=SEED, speed=args.speed, anchor=anchor
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        feeds = SimulatedFeeds(SimulatedMarket(SEED))
        yield _RemoteSim(
            f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/swap-market", feeds, process
        )
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


async def _record(db: Database, sim: _RemoteSim, seconds: float, drops: int) -> tuple[dict, float]:
    config = RecorderConfig(
        ws_url=sim.ws_url,
        rest_url=sim.base_url,
        flush_seconds=0.5,
        heartbeat_seconds=2.0,
        reconnect_backoff=(0.05, 0.5),
        idle_timeout=10.0,
    )
    recorder = Recorder(db, config)
    stop = asyncio.Event()

    async def dropper() -> None:
        for i in range(drops):
            await asyncio.sleep(seconds * (i + 1) / (drops + 1))
            sim.drop_connections()

    started = time.perf_counter()
    side = asyncio.create_task(dropper())
    counters = await recorder.run(stop, duration_seconds=seconds)
    await side
    return counters, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="virtual minutes replayed")
    parser.add_argument("--speed", type=float, default=30.0, help="virtual s per real s")
    parser.add_argument("--trades-per-second", type=float, default=50.0)
    parser.add_argument("--drops", type=int, default=1, help="disconnects of every stream")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    # The busy tape: the simulator draws a Poisson count of trades per minute around this mean.
    sim_feeds._TRADES_PER_MINUTE = args.trades_per_second * 60.0
    seconds = args.minutes * 60.0 / args.speed
    anchor = GENESIS_MS + 40 * DAY_MS + 30_500
    with bench_database(args.database_url) as db, _simulator(args, anchor) as sim:
        counters, wall = asyncio.run(_record(db, sim, seconds, args.drops))
        loss = _stored_vs_sent(db, sim.feeds)
        table_rows = _rows_of(db)
        recorder_s, again_s, bare_s, n = _baseline(db, table_rows)
    written = counters["written"]
    offered = counters["offered"]
    total_written = sum(written.values())
    stored = sum(v[0] for v in loss.values())
    sent = sum(v[1] for v in loss.values())
    extra = sum(v[2] for v in loss.values())
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(
        f"## Recorder: a busy hour through the simulator ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    print()
    print(f"- machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.python_version()}, "
          f"load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}")  # fmt: skip
    print(f"- load: {args.minutes:g} virtual minutes at {args.speed:g}x ({wall:.0f} s wall), "
          f"{args.trades_per_second:g} trades/s per symbol on average, 2 symbols, every channel "
          f"(trade, kline_1m, depth20@100ms, incrDepth, ticker, markPrice, bookTicker), "
          f"{args.drops} disconnect(s) of every stream")  # fmt: skip
    print(f"- command: `uv run python benchmarks/bench_recorder.py --minutes {args.minutes:g} "
          f"--speed {args.speed:g} --trades-per-second {args.trades_per_second:g} "
          f"--drops {args.drops}`")  # fmt: skip
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| trades stored / sent by the exchange | {stored} / {sent} = "
          f"{100.0 * stored / max(sent, 1):.2f} % |")  # fmt: skip
    print(f"| trades stored that were never sent | {extra} |")
    dup = offered["stream_trades"] - written["stream_trades"]
    print(f"| trade rows offered / written (duplicates removed) | {offered['stream_trades']} / "
          f"{written['stream_trades']} ({dup} removed) |")  # fmt: skip
    repeats = sum(v.get("duplicates", 0) for v in counters["streams"].values())
    print(f"| repeated trades dropped by the streams before writing | {repeats} |")
    print(f"| trades refilled over REST after disconnects | {counters.get('refilled', 0)} |")
    print(f"| channel resubscriptions / task failures / write failures | "
          f"{counters['reconnects']} / {counters['task_failures']} / "
          f"{counters['write_failures']} |")  # fmt: skip
    sockets = counters.get("connections", [])
    print(f"| sockets / socket reconnects | {len(sockets)} / "
          f"{sum(c['reconnects'] for c in sockets)} |")  # fmt: skip
    print(f"| gaps recorded (book, ticker, mark, book ticker) | {written['stream_gaps']} |")
    print(f"| rows written, all tables | {total_written} |")
    print(f"| sustained write rate (rows / wall s) | {total_written / wall:,.0f} rows/s |")
    print(f"| write path capacity (rows / s spent writing) | "
          f"{total_written / max(counters['write_seconds'], 1e-9):,.0f} rows/s |")  # fmt: skip
    print(f"| same {n} rows, one batch, empty tables: recorder path | "
          f"{recorder_s:.2f} s = {n / recorder_s:,.0f} rows/s |")  # fmt: skip
    print(f"| same rows again, all stored already (staging + ON CONFLICT DO NOTHING) | "
          f"{again_s:.2f} s = {n / again_s:,.0f} rows/s, 0 written |")  # fmt: skip
    print(f"| same rows, bare COPY into the same empty tables (baseline) | "
          f"{bare_s:.2f} s = {n / bare_s:,.0f} rows/s |")  # fmt: skip
    print(f"| recorder path / bare COPY | {bare_s / recorder_s:.2f}x the baseline's speed |")
    print()
    for table in STREAM_TABLES:
        print(f"- {table}: {written[table]} written of {offered[table]} offered")
    return 0 if stored == sent and extra == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
