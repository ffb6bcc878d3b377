"""The streaming recorder: every market channel of the configured symbols, into PostgreSQL.

All channels share one WebSocket (:class:`MarketConnection`; a new socket per 200 topics, BingX's
limit per connection). One asyncio task per (symbol, channel) reads its stream and appends rows
to an in-memory
buffer; a writer task flushes the buffer every ``flush_seconds`` (or when it holds
``max_batch`` rows) in one idempotent transaction (:class:`StreamStore`); a heartbeat task
upserts ``recorder_heartbeats`` with the counters. A channel task that fails (a REST refill
that keeps failing, a refused subscription) is logged, counted and restarted after a backoff;
a malformed push is logged, counted and skipped by the stream itself. Nothing one channel does
stops the others. While the database is away rows wait in memory up to ``max_buffered_rows``,
then in the disk spool (:mod:`goldrl_dagster.lib.recorder.spool`), replayed once it is back.

After a disconnect, trades and klines come back over REST (:class:`TradeStream`,
:class:`KlineStream`), and after their task's restart too (their streams are kept across
restarts, so the new task refills from the last trade or candle the failed one yielded); the
book, ticker, mark price and book ticker have no REST history, so
the stretch between the last record before the disconnect and the first after it is stored in
``stream_gaps`` (reason ``disconnect``), as is the stretch a failed book, ticker, mark-price or
book-ticker task missed before its restart. A skipped ``incrDepth`` id resyncs the book (a fresh
subscription's whole book) and the stretch without a book is stored as a ``sequence_skip`` gap;
trades older than one REST page after a long disconnect as ``rest_window_exceeded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from goldrl_dagster.lib.backoff import backoff_delay
from goldrl_dagster.lib.bingx.market_connection import MAX_TOPICS, MarketConnection
from goldrl_dagster.lib.bingx.market_models import (
    BookSnapshot,
    parse_book_ticker_push,
    parse_depth_push,
    parse_mark_price_push,
    parse_ticker_push,
)
from goldrl_dagster.lib.bingx.order_book import BookResync, IncrDepthStream
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.stream import KlineStream, PushParser, PushStream, TradeStream
from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS, resolve_symbol
from goldrl_dagster.lib.recorder import rows
from goldrl_dagster.lib.recorder.spool import Spool, SpoolError, load_batch
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import (
    STREAM_TABLES,
    RecorderBeat,
    StreamStore,
    upsert_recorder_beat,
)

log = logging.getLogger("goldrl.recorder")

# Channels whose restarted task refills over REST what the failed one missed (the streams are
# kept across restarts); the others' restart leaves a gap on record.
REFILLED_CHANNELS = ("trade", "kline_")
CHANNELS_PER_SYMBOL = 7  # trade, kline, incrDepth, depth, ticker, markPrice, bookTicker


@dataclass(frozen=True)
class RecorderConfig:
    """What to record and how.

    Attributes:
        ws_url: Market-stream URL.
        rest_url: REST base URL (refills and book snapshots).
        instruments: Symbols (or aliases) recorded.
        depth_channel: The book snapshot channel, e.g. ``depth20@100ms``.
        kline_interval: Interval of the kline channel.
        book_levels: Levels per side kept from ``incrDepth`` (and its REST snapshot limit).
        flush_seconds: Longest a row waits in memory before it is written.
        max_batch: Rows in the buffer that trigger a write before ``flush_seconds``.
        heartbeat_seconds: Interval of the heartbeat row.
        reconnect_backoff: ``(first, cap)`` seconds between stream reconnections.
        idle_timeout: Seconds without a frame after which a connection is replaced.
        restart_backoff: ``(first, cap)`` seconds before a failed channel task restarts.
        recorder_id: Id of this recorder's heartbeat row (default: a new uuid).
        spool_dir: Where batches the database cannot take are written (``goldrl record``:
            ``GOLDRL_HOME/recorder-spool``); None keeps them in memory only.
        max_buffered_rows: Rows kept in memory while writes fail; beyond that the buffer goes
            to the spool (with a spool) and memory is freed.
    """

    ws_url: str
    rest_url: str
    instruments: tuple[str, ...] = GOLD_SYMBOLS
    depth_channel: str = "depth20@100ms"
    kline_interval: str = "1m"
    book_levels: int = 20
    flush_seconds: float = 0.5
    max_batch: int = 5000
    heartbeat_seconds: float = 5.0
    reconnect_backoff: tuple[float, float] = (0.2, 5.0)
    idle_timeout: float = 30.0
    restart_backoff: tuple[float, float] = (1.0, 30.0)
    recorder_id: str = field(default_factory=lambda: f"recorder-{uuid.uuid4().hex[:12]}")
    spool_dir: Path | None = None
    max_buffered_rows: int = 200_000

    def __post_init__(self) -> None:
        if not self.instruments:
            raise ValueError("instruments must name at least one symbol")
        object.__setattr__(self, "instruments", tuple(resolve_symbol(s) for s in self.instruments))
        if not self.depth_channel.startswith("depth"):
            raise ValueError(f"depth_channel must be depthN[@Xms], got {self.depth_channel!r}")
        for name in ("flush_seconds", "heartbeat_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.max_buffered_rows < self.max_batch:
            raise ValueError(
                f"max_buffered_rows must be >= max_batch ({self.max_batch}), "
                f"got {self.max_buffered_rows}"
            )


@dataclass
class _Watch:
    """Per (symbol, channel): the last event time and a disconnect waiting to be measured."""

    last_ms: int | None = None
    gap_from_ms: int | None = None
    connections: int = 0
    why: str = ""  # what opened the pending gap, when not a plain reconnection


class Recorder:
    """Records every market channel of ``config.instruments`` into ``db``.

    Args:
        db: The goldrl database (migrated).
        config: What to record.
        rest_client: REST client for refills and snapshots (default: one on ``config.rest_url``).

    Attributes:
        stats: Counters (also written into every heartbeat).
    """

    def __init__(
        self, db: Database, config: RecorderConfig, rest_client: BingXRestClient | None = None
    ) -> None:
        self.db = db
        self.config = config
        self._own_rest = rest_client is None
        self.rest = rest_client if rest_client is not None else BingXRestClient(config.rest_url)
        self.started_at = datetime.now(UTC)
        self.stats: dict[str, Any] = {
            "task_failures": 0,
            "write_failures": 0,
            "flushes": 0,
            "write_seconds": 0.0,  # time spent in batch writes (the sustained write rate)
            "spooled_rows": 0,  # rows written to the disk spool while the database was away
            "replayed_rows": 0,  # spooled rows written to the database since
            "spool_bad_files": 0,
        }
        self._buffer: dict[str, list[tuple]] = {t: [] for t in STREAM_TABLES}
        self._buffered = 0
        self._full = asyncio.Event()
        self._watches: dict[tuple[str, str], _Watch] = {}
        self._streams: list[Any] = []
        self._kept_streams: dict[str, Any] = {}
        self._store: StreamStore | None = None
        self._closing = False
        self._spool = Spool(config.spool_dir) if config.spool_dir is not None else None
        self._spool_waiting = self._spool is not None and bool(self._spool.pending())
        per_socket = MAX_TOPICS // CHANNELS_PER_SYMBOL
        self._connections = [
            MarketConnection(
                config.ws_url,
                reconnect_backoff=config.reconnect_backoff,
                idle_timeout=config.idle_timeout,
            )
            for _ in range(0, len(config.instruments), per_socket)
        ]
        self._connection_of = {
            symbol: self._connections[i // per_socket]
            for i, symbol in enumerate(config.instruments)
        }

    # -- buffer --------------------------------------------------------------------------

    def _add(self, table: str, row: tuple) -> None:
        self._buffer[table].append(row)
        self._buffered += 1
        if self._buffered >= self.config.max_batch:
            self._full.set()

    def _gap(
        self, symbol: str, channel: str, start: int, end: int, reason: str, detail: str = ""
    ) -> None:
        log.warning("%s@%s: gap %s from %d to %d %s", symbol, channel, reason, start, end, detail)
        self._add("stream_gaps", rows.gap_row(symbol, channel, start, end, reason, detail))

    def _seen(self, symbol: str, channel: str, time_ms: int) -> None:
        """Note a record's time; close a pending disconnect gap with it."""
        watch = self._watches.setdefault((symbol, channel), _Watch())
        if watch.gap_from_ms is not None:
            detail = watch.why or f"reconnection {watch.connections - 1}"
            self._gap(symbol, channel, watch.gap_from_ms, time_ms, "disconnect", detail)
            watch.gap_from_ms, watch.why = None, ""
        watch.last_ms = time_ms if watch.last_ms is None else max(watch.last_ms, time_ms)

    def _connected(self, symbol: str, channel: str) -> None:
        """A (re)connection: after the first, what came meanwhile is a gap to measure."""
        watch = self._watches.setdefault((symbol, channel), _Watch())
        watch.connections += 1
        if watch.connections > 1 and watch.last_ms is not None and watch.gap_from_ms is None:
            watch.gap_from_ms = watch.last_ms

    def _restarted(self, symbol: str, channel: str) -> None:
        """A channel task failed: what its next stream misses is a gap (nothing refills it)."""
        watch = self._watches.setdefault((symbol, channel), _Watch())
        if watch.last_ms is not None and watch.gap_from_ms is None:
            watch.gap_from_ms = watch.last_ms
            watch.why = "channel task restarted after a failure; not refilled"

    async def flush(self) -> dict[str, int]:
        """Write what the buffer holds (one transaction); returns rows inserted per table.

        After a write succeeds, batches waiting in the spool are replayed. When a write fails
        the rows go back to the buffer for the next flush; beyond ``max_buffered_rows`` they
        go to the spool instead.
        """
        batch, self._buffer = self._buffer, {t: [] for t in STREAM_TABLES}
        self._buffered = 0
        self._full.clear()
        if not any(batch.values()):
            if self._spool_waiting:
                await self._replay()
            return {}
        store = self._store
        assert store is not None, "flush() before run()"
        started = time.perf_counter()
        try:
            inserted = await asyncio.to_thread(store.write, batch)
        except Exception:
            # Keep the rows: the next flush retries them (the write is idempotent).
            self.stats["write_failures"] += 1
            log.exception("recorder: writing a batch failed; retrying with the next flush")
            for table, table_rows in batch.items():
                self._buffer[table] = table_rows + self._buffer[table]
                self._buffered += len(table_rows)
            if self._buffered > self.config.max_buffered_rows:
                await self.spill(f"{self._buffered} rows waited in memory")
            return {}
        self.stats["flushes"] += 1
        self.stats["write_seconds"] += time.perf_counter() - started
        if self._spool_waiting:
            await self._replay()
        return inserted

    async def spill(self, why: str) -> None:
        """Move the buffer to the spool (nothing happens without one, or with nothing buffered).

        Args:
            why: Said in the log.
        """
        if self._spool is None or not self._buffered:
            return
        batch, count = self._buffer, self._buffered
        self._buffer, self._buffered = {t: [] for t in STREAM_TABLES}, 0
        self._full.clear()
        path = await asyncio.to_thread(self._spool.put, batch)
        self._spool_waiting = True
        self.stats["spooled_rows"] += count
        log.warning("recorder: %s; %d rows spooled to %s until the database is back",
                    why, count, path)  # fmt: skip

    async def _replay(self) -> None:
        """Write the spooled batches, oldest first; stop at the first failed write."""
        spool, store = self._spool, self._store
        assert spool is not None and store is not None
        for path in await asyncio.to_thread(spool.pending):
            try:
                batch = await asyncio.to_thread(load_batch, path)
            except SpoolError as exc:
                self.stats["spool_bad_files"] += 1
                await asyncio.to_thread(spool.quarantine, path, str(exc))
                continue
            try:
                await asyncio.to_thread(store.write, batch)
            except Exception:
                self.stats["write_failures"] += 1
                log.exception("recorder: replaying %s failed; kept for the next flush", path.name)
                return
            path.unlink()
            count = sum(len(r) for r in batch.values())
            self.stats["replayed_rows"] += count
            log.info("recorder: replayed %d spooled rows from %s", count, path.name)
        self._spool_waiting = False

    # -- channel tasks -------------------------------------------------------------------

    def _stream_kwargs(self, symbol: str) -> dict[str, Any]:
        return {"connection": self._connection_of[symbol]}

    def _kept(self, name: str, make: Callable[[], Any]) -> Any:
        """The channel's stream, made once: a restarted task goes on where the failed one was."""
        stream = self._kept_streams.get(name)
        if stream is None:
            stream = self._kept_streams[name] = make()
            self._streams.append(stream)
        return stream

    async def _trades(self, symbol: str) -> None:
        stream: TradeStream = self._kept(
            f"{symbol}@trade",
            lambda: TradeStream(
                self.config.ws_url, symbol, rest_client=self.rest, **self._stream_kwargs(symbol)
            ),
        )
        unrecovered = stream.unrecovered_gaps
        last_ms = stream.last_seen_ms  # before a restart: where its refill starts from
        async with contextlib.aclosing(stream.trades()) as trades:
            async for trade in trades:
                if stream.unrecovered_gaps > unrecovered and last_ms is not None:
                    unrecovered = stream.unrecovered_gaps
                    detail = "REST recent trades do not reach back to the last trade seen"
                    self._gap(
                        symbol, "trade", last_ms, trade.time_ms, "rest_window_exceeded", detail
                    )
                self._add("stream_trades", rows.trade_row(trade, stream.occurrence(trade)))
                self._seen(symbol, "trade", trade.time_ms)
                last_ms = trade.time_ms if last_ms is None else max(last_ms, trade.time_ms)

    async def _klines(self, symbol: str) -> None:
        interval = self.config.kline_interval
        stream: KlineStream = self._kept(
            f"{symbol}@kline_{interval}",
            lambda: KlineStream(
                self.config.ws_url, symbol, interval, rest_client=self.rest,
                **self._stream_kwargs(symbol),
            ),
        )  # fmt: skip
        async with contextlib.aclosing(stream.closed_klines()) as klines:
            async for kline in klines:
                self._seen(symbol, f"kline_{interval}", kline.open_time_ms)
                self._add("stream_klines", rows.kline_row(symbol, interval, kline))

    async def _snapshots(
        self, symbol: str, channel: str, parse: PushParser[Any], table: str, to_row: Callable
    ) -> None:
        stream: PushStream[Any] = PushStream(
            self.config.ws_url, f"{symbol}@{channel}", parse, **self._stream_kwargs(symbol)
        )
        self._streams.append(stream)
        async with contextlib.aclosing(stream.events()) as events:
            async for event in events:
                if event.kind == "connected":
                    self._connected(symbol, channel)
                    continue
                for record in event.records:
                    self._seen(symbol, channel, record.time_ms)
                    self._add(table, to_row(record))

    async def _incr_depth(self, symbol: str) -> None:
        stream = IncrDepthStream(
            self.config.ws_url, symbol, self.rest, max_levels=self.config.book_levels,
            **self._stream_kwargs(symbol),
        )  # fmt: skip
        self._streams.append(stream.stream)
        self.stats.setdefault("resyncs", {})[symbol] = 0
        async with contextlib.aclosing(stream.updates()) as updates:
            async for item in updates:
                if item == "connected":
                    self._connected(symbol, "incrDepth")
                elif isinstance(item, BookResync):
                    self.stats["resyncs"][symbol] += 1
                    detail = f"expected lastUpdateId {item.expected_id}, got {item.received_id}"
                    resumed = item.resumed_ms if item.resumed_ms is not None else item.time_ms
                    self._gap(symbol, "incrDepth", item.time_ms, resumed,
                              "sequence_skip", detail)  # fmt: skip
                else:
                    assert isinstance(item, BookSnapshot)
                    self._seen(symbol, "incrDepth", item.time_ms)
                    self._add("stream_book", rows.book_row(item))

    def _channel_tasks(self) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        tasks: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        for symbol in self.config.instruments:
            depth = self.config.depth_channel
            tasks[f"{symbol}@trade"] = lambda s=symbol: self._trades(s)
            tasks[f"{symbol}@kline_{self.config.kline_interval}"] = lambda s=symbol: self._klines(s)
            tasks[f"{symbol}@incrDepth"] = lambda s=symbol: self._incr_depth(s)
            tasks[f"{symbol}@{depth}"] = lambda s=symbol, d=depth: self._snapshots(
                s, d, parse_depth_push, "stream_book", rows.book_row
            )
            tasks[f"{symbol}@ticker"] = lambda s=symbol: self._snapshots(
                s, "ticker", parse_ticker_push, "stream_tickers", rows.ticker_row
            )
            tasks[f"{symbol}@markPrice"] = lambda s=symbol: self._snapshots(
                s, "markPrice", parse_mark_price_push, "stream_mark_prices", rows.mark_row
            )
            tasks[f"{symbol}@bookTicker"] = lambda s=symbol: self._snapshots(
                s, "bookTicker", parse_book_ticker_push, "stream_book_tickers",
                rows.book_ticker_row,
            )  # fmt: skip
        return tasks

    async def _supervised(self, name: str, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a channel task forever: a failure is logged, counted and restarted."""
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                await make()
                log.warning("recorder: %s ended; restarting", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats["task_failures"] += 1
                log.exception("recorder: %s failed; restarting", name)
                symbol, _, channel = name.partition("@")
                if not channel.startswith(REFILLED_CHANNELS):
                    self._restarted(symbol, channel)
            if time.monotonic() - started > 60.0:
                attempt = 0
            delay = backoff_delay(attempt, self.config.restart_backoff)
            attempt += 1
            await asyncio.sleep(delay)

    # -- writer and heartbeat ------------------------------------------------------------

    async def _writer(self) -> None:
        """Flush every ``flush_seconds`` or when the buffer fills, until closing.

        After a failed write the next try waits ``flush_seconds`` even when the buffer is full:
        an unreachable database is retried at that pace, not at every push.
        """
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.config.flush_seconds)
            failures = self.stats["write_failures"]
            await self.flush()
            if self.stats["write_failures"] > failures and not self._closing:
                await asyncio.sleep(self.config.flush_seconds)

    def counters(self) -> dict[str, Any]:
        """The stats plus the streams' own counters (reconnects, malformed, duplicates)."""
        streams: dict[str, dict[str, int]] = {}
        for s in self._streams:
            streams[s.data_type] = {
                "reconnects": s.reconnects,
                "corrupt_frames": s.corrupt_frames,
                "malformed_pushes": s.malformed_pushes,
                **({"duplicates": s.duplicates, "refilled": s.refilled} if hasattr(s, "refilled")
                   else {}),
            }  # fmt: skip
        totals = {
            key: sum(v.get(key, 0) for v in streams.values())
            for key in ("reconnects", "corrupt_frames", "malformed_pushes", "refilled")
        }
        sockets = [
            {"topics": len(c.topics), "reconnects": c.reconnects,
             "corrupt_frames": c.corrupt_frames}
            for c in self._connections
        ]  # fmt: skip
        totals["corrupt_frames"] += sum(c["corrupt_frames"] for c in sockets)
        store = self._store
        written = dict(store.written) if store is not None else {}
        offered = dict(store.offered) if store is not None else {}
        return {**self.stats, **totals, "written": written, "offered": offered,
                "streams": streams, "connections": sockets}  # fmt: skip

    def _beat(self) -> RecorderBeat:
        return RecorderBeat(
            self.config.recorder_id, self.config.instruments, self.started_at,
            self.config.heartbeat_seconds, self.counters(),
        )  # fmt: skip

    async def _heartbeat(self) -> None:
        while True:
            try:
                await asyncio.to_thread(upsert_recorder_beat, self.db, self._beat())
            except Exception:
                log.exception("recorder: heartbeat failed")
            await asyncio.sleep(self.config.heartbeat_seconds)

    # -- run -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, duration_seconds: float = 0.0) -> dict[str, Any]:
        """Record until ``stop`` is set (or ``duration_seconds`` pass, when > 0).

        On the way out the buffer is flushed and the heartbeat row marked stopped.

        Returns:
            The final counters.
        """
        self._store = await asyncio.to_thread(StreamStore, self.db)
        log.info(
            "recorder %s: recording %s to the database",
            self.config.recorder_id, ", ".join(self.config.instruments),
        )  # fmt: skip
        writer = asyncio.create_task(self._writer(), name="writer")
        try:
            async with _tasks(
                {
                    **{n: self._supervised(n, m) for n, m in self._channel_tasks().items()},
                    "heartbeat": self._heartbeat(),
                }
            ):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration_seconds or None)
        finally:
            # The channels are stopped: let the writer finish its write, then flush the rest.
            self._closing = True
            self._full.set()
            await asyncio.gather(writer, return_exceptions=True)
            await self.flush()
            await self.spill("the database could not take the last rows at shutdown")
            for connection in self._connections:
                await connection.aclose()
            try:
                await asyncio.to_thread(upsert_recorder_beat, self.db, self._beat(), stopped=True)
            finally:
                await asyncio.to_thread(self._store.close)
                if self._own_rest:
                    self.rest.close()
        counters = self.counters()
        log.info("recorder %s stopped: %s", self.config.recorder_id, counters["written"])
        return counters


@contextlib.asynccontextmanager
async def _tasks(coros: dict[str, Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run the coroutines as tasks for the block; cancel and await them on exit."""
    tasks = [asyncio.create_task(c, name=n) for n, c in coros.items()]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
