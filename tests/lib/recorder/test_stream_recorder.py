"""The streaming recorder against the real simulator and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.recorder.service import Recorder
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import recorder_beats
from tests.support.recorder_support import config_for
from tests.support.stream_helpers import run

SYMBOLS = ("XAUT-USDT", "PAXG-USDT")


def record(
    db: Database,
    sim: SimulatorServer,
    seconds: float,
    during: Callable[[Recorder], Coroutine[Any, Any, None]] | None = None,
    rest_client: Any = None,
    **overrides: object,
) -> tuple[Recorder, dict]:
    """Run a recorder for ``seconds`` (with ``during`` running beside it); return its counters."""
    recorder = Recorder(db, config_for(sim, **overrides), rest_client=rest_client)

    async def main() -> dict:
        stop = asyncio.Event()
        side = asyncio.create_task(during(recorder)) if during else None
        counters = await recorder.run(stop, duration_seconds=seconds)
        if side is not None:
            await side
        return counters

    return recorder, run(main(), timeout=seconds + 20.0)


def count(db: Database, query: str, *params: object) -> Any:
    with db.connect() as conn:
        return conn.execute(query, params).fetchone()[0]  # type: ignore[index]


def test_every_channel_of_both_symbols_is_recorded(
    clean_database: Database, rec_sim: SimulatorServer
) -> None:
    db = clean_database
    sockets: list = []

    async def look(_: Recorder) -> None:
        await asyncio.sleep(1.5)
        sockets.extend(rec_sim.market_subscriptions())

    _, counters = record(db, rec_sim, 3.0, look)
    # Fourteen subscriptions, one socket.
    assert len(sockets) == 1 and len(sockets[0]) == 14
    assert counters["connections"] == [{"topics": 0, "reconnects": 0, "corrupt_frames": 0}]
    for symbol in SYMBOLS:
        for table in ("stream_trades", "stream_tickers", "stream_mark_prices",
                      "stream_book_tickers", "stream_klines"):  # fmt: skip
            n = count(db, f"SELECT count(*) FROM {table} WHERE symbol = %s", symbol)
            assert n > 0, f"{table} has no {symbol} rows"
        for channel in ("depth20@100ms", "incrDepth"):
            n = count(
                db, "SELECT count(*) FROM stream_book WHERE symbol = %s AND channel = %s",
                symbol, channel,
            )  # fmt: skip
            assert n > 0, f"no {symbol} {channel} books"
    crossed = count(db, "SELECT count(*) FROM stream_book WHERE best_bid >= best_ask")
    assert crossed == 0
    assert count(db, "SELECT count(*) FROM stream_gaps") == 0
    assert counters["task_failures"] == 0
    beats = recorder_beats(db, running_only=False)
    assert len(beats) == 1 and beats[0].stopped_at is not None
    assert beats[0].stats["written"]["stream_trades"] == count(
        db, "SELECT count(*) FROM stream_trades"
    )


def _stored_vs_sent(db: Database, sim: SimulatorServer, symbol: str) -> tuple[list, list]:
    with db.connect() as conn:
        stored = conn.execute(
            "SELECT (extract(epoch FROM time) * 1000)::bigint, price, quantity, is_buyer_maker "
            "FROM stream_trades WHERE symbol = %s ORDER BY time",
            (symbol,),
        ).fetchall()
    first, last = stored[0][0], stored[-1][0]
    sent = [
        (t.time_ms, t.price, t.quantity, t.is_buyer_maker)
        for t in sim.feeds.trades_between(symbol, first - 1, last)
    ]
    return [tuple(r) for r in stored], sent


def test_a_disconnect_refills_trades_exactly_and_records_the_book_gap(
    clean_database: Database, rec_sim: SimulatorServer
) -> None:
    db = clean_database

    async def drop(_: Recorder) -> None:
        await asyncio.sleep(1.5)
        rec_sim.drop_connections()

    _, counters = record(db, rec_sim, 4.0, drop)
    assert counters["reconnects"] >= 14  # every channel of both symbols came back
    assert counters["connections"][0]["reconnects"] == 1  # on one new socket
    for symbol in SYMBOLS:
        stored, sent = _stored_vs_sent(db, rec_sim, symbol)
        assert stored == sent  # no trade lost, none twice
        with db.connect() as conn:
            gaps = {
                r[0]
                for r in conn.execute(
                    "SELECT channel FROM stream_gaps WHERE symbol = %s AND reason = 'disconnect' "
                    "AND gap_end > gap_start",
                    (symbol,),
                )
            }
        assert {"incrDepth", "ticker", "markPrice", "bookTicker"} <= gaps
        assert "trade" not in gaps
        with db.connect() as conn:
            opens = [
                r[0]
                for r in conn.execute(
                    "SELECT open_time FROM stream_klines WHERE symbol = %s ORDER BY open_time",
                    (symbol,),
                )
            ]
        # Klines are final and contiguous across the disconnect (refilled over REST).
        assert len(opens) >= 2
        assert all((b - a).total_seconds() == 60 for a, b in itertools.pairwise(opens))
    assert counters["refilled"] > 0


def test_a_skipped_update_id_resubscribes_and_every_stored_book_is_exact(
    clean_database: Database, rec_sim: SimulatorServer
) -> None:
    db = clean_database

    async def skip(_: Recorder) -> None:
        await asyncio.sleep(1.5)
        rec_sim.skip_next_update_ids(1)

    _, counters = record(db, rec_sim, 3.0, skip)
    with db.connect() as conn:
        ((symbol, detail, gap_start, gap_end),) = conn.execute(
            "SELECT symbol, detail, gap_start, gap_end FROM stream_gaps "
            "WHERE reason = 'sequence_skip'"
        ).fetchall()
        books = conn.execute(
            "SELECT time, update_id, bids, asks FROM stream_book "
            "WHERE symbol = %s AND channel = 'incrDepth' ORDER BY update_id",
            (symbol,),
        ).fetchall()
    assert "expected lastUpdateId" in detail
    assert sum(counters["resyncs"].values()) == 1
    assert count(db, "SELECT count(*) FROM stream_gaps WHERE reason = 'disconnect'") == 0
    # One hole in the ids; the gap spans it: from the push that revealed it to the first book
    # of the fresh subscription.
    holes = [(a, b) for a, b in itertools.pairwise(books) if b[1] - a[1] != 1]
    assert len(holes) == 1
    before, after = holes[0]
    assert before[0] <= gap_start < gap_end == after[0]
    # Every stored book is the exchange's book at its time, the ones after the resync too.
    levels = lambda side: [[float(p), float(q)] for p, q in side]  # noqa: E731
    for time, _, bids, asks in books:
        book = rec_sim.feeds.depth(symbol, 20, int(time.timestamp() * 1000))
        assert (levels(bids), levels(asks)) == (levels(book["bids"]), levels(book["asks"]))
    assert count(db, "SELECT count(*) FROM stream_book WHERE best_bid >= best_ask") == 0


def test_malformed_and_corrupt_frames_are_skipped_and_recording_goes_on(
    clean_database: Database, rec_sim: SimulatorServer
) -> None:
    db = clean_database
    seen: dict[str, int] = {}

    async def spoil(recorder: Recorder) -> None:
        await asyncio.sleep(1.0)
        rec_sim.malform_next_pushes(5, field="data", value="garbage")
        await asyncio.sleep(0.3)
        rec_sim.corrupt_next_frame()
        await asyncio.sleep(0.5)
        seen["trades"] = recorder.counters()["offered"]["stream_trades"]

    _, counters = record(db, rec_sim, 3.5, spoil)
    assert counters["malformed_pushes"] >= 5
    assert counters["corrupt_frames"] == 1
    assert counters["task_failures"] == 0
    # Recording went on after the faults.
    assert counters["offered"]["stream_trades"] > seen["trades"]
    for symbol in SYMBOLS:
        stored, sent = _stored_vs_sent(db, rec_sim, symbol)
        assert stored == sent


def test_writing_the_same_batch_twice_stores_it_once(clean_database: Database) -> None:
    from goldrl_dagster.lib.bingx.models import _make_trade
    from goldrl_dagster.lib.recorder import rows
    from goldrl_dagster.lib.storage.stream_store import StreamStore

    t0 = 1_739_145_600_000
    trades = [_make_trade("XAUT-USDT", t0 + i, 3100.0 + i, 0.5, i % 2 == 0) for i in range(50)]
    batch = {
        "stream_trades": [rows.trade_row(t, 1) for t in trades],
        "stream_mark_prices": [("XAUT-USDT", rows.utc(t0 + i), 3101.0) for i in range(10)],
        "stream_gaps": [rows.gap_row("XAUT-USDT", "ticker", t0, t0 + 5000, "disconnect")],
    }
    with StreamStore(clean_database) as store:
        first = store.write(batch)
        again = store.write(batch)
        # A batch holding a row twice stores it once.
        doubled = store.write({"stream_mark_prices": [batch["stream_mark_prices"][0]] * 2})
    assert first == {"stream_trades": 50, "stream_mark_prices": 10, "stream_gaps": 1}
    assert again == {"stream_trades": 0, "stream_mark_prices": 0, "stream_gaps": 0}
    assert doubled == {"stream_mark_prices": 0}
    assert count(clean_database, "SELECT count(*) FROM stream_trades") == 50


def test_a_failing_channel_restarts_and_its_hole_is_recorded(
    clean_database: Database, rec_sim: SimulatorServer
) -> None:
    from goldrl_dagster.lib.bingx.rest import BingXRestClient

    db = clean_database
    rest = BingXRestClient(rec_sim.base_url, max_retries=0, sleep=lambda _: None)

    async def break_rest(_: Recorder) -> None:
        await asyncio.sleep(1.5)
        # Every REST call after the drop fails: the refills and book snapshots raise.
        rec_sim.inject_rest_faults(*([500] * 12))
        rec_sim.drop_connections()

    try:
        _, counters = record(db, rec_sim, 4.0, break_rest, rest_client=rest)
    finally:
        rec_sim.clear_rest_faults()
        rest.close()
    assert counters["task_failures"] >= 1
    with db.connect() as conn:
        restarted = conn.execute(
            "SELECT count(*) FROM stream_gaps WHERE detail LIKE 'channel task restarted%%'"
        ).fetchone()[0]  # type: ignore[index]
        late = conn.execute(
            "SELECT count(*) FROM stream_trades WHERE recorded_at > "
            "(SELECT max(recorded_at) FROM stream_gaps)"
        ).fetchone()[0]  # type: ignore[index]
        restarted_channels = {
            row[0]
            for row in conn.execute(
                "SELECT channel FROM stream_gaps WHERE detail LIKE 'channel task restarted%%'"
            )
        }
    assert restarted >= 1  # the hole a failed channel left is on record
    assert late > 0  # and recording went on after it
    # Trades and klines have REST history: their restarted tasks refilled what the failed ones
    # missed, so no hole is on record for them and no trade is missing.
    assert counters["streams"]["XAUT-USDT@trade"]["refilled"] > 0
    assert not {c for c in restarted_channels if c == "trade" or c.startswith("kline_")}
    for symbol in SYMBOLS:
        stored, sent = _stored_vs_sent(db, rec_sim, symbol)
        assert stored == sent


def test_a_batch_failing_after_a_conflict_stores_nothing(clean_database: Database) -> None:
    """The staging path must not commit half a batch (the first conflict creates the stage)."""
    from goldrl_dagster.lib.bingx.models import _make_trade
    from goldrl_dagster.lib.recorder import rows
    from goldrl_dagster.lib.storage.stream_store import StreamStore

    t0 = 1_739_145_600_000
    stored = [("XAUT-USDT", rows.utc(t0 + i), 3101.0) for i in range(3)]
    trades = [_make_trade("XAUT-USDT", t0 + i, 3100.0 + i, 0.5, True) for i in range(5)]
    batch = {
        "stream_trades": [rows.trade_row(t, 1) for t in trades],  # fresh: COPYed straight in
        "stream_mark_prices": stored,  # all stored: goes through the staging table
        "stream_book_tickers": [("XAUT-USDT", rows.utc(t0), None, None, 1.0, 2.0, 1.0)],
    }
    with StreamStore(clean_database) as store:
        store.write({"stream_mark_prices": stored})
        try:
            store.write(batch)
        except Exception:  # a NULL bid price breaks NOT NULL: the batch fails
            pass
        else:
            raise AssertionError("a row breaking a constraint was written")
        assert count(clean_database, "SELECT count(*) FROM stream_trades") == 0
        # The same store still writes (its staging table is usable after the rollback).
        assert store.write({k: v for k, v in batch.items() if k != "stream_book_tickers"}) == {
            "stream_trades": 5,
            "stream_mark_prices": 0,
        }


def test_a_lost_database_session_is_replaced_and_no_trade_is_lost(
    clean_database: Database, rec_sim: SimulatorServer
) -> None:
    """A database restart kills the store's session: the next flush opens a new one."""
    db = clean_database
    killed: list[Any] = []  # the database's clock when the session was killed

    async def kill_session(recorder: Recorder) -> None:
        await asyncio.sleep(1.5)
        assert recorder._store is not None
        pid = recorder._store._conn.info.backend_pid
        with db.connect() as conn:
            at = conn.execute(
                "SELECT clock_timestamp() FROM pg_terminate_backend(%s) AS t(ok) WHERE ok", (pid,)
            ).fetchone()
            conn.commit()
        killed.append(at[0] if at else None)

    _, counters = record(db, rec_sim, 4.0, kill_session)
    (killed_at,) = killed
    assert killed_at is not None  # the session was terminated
    assert counters["write_failures"] >= 1  # the write that found the session gone
    late = count(db, "SELECT count(*) FROM stream_trades WHERE recorded_at > %s", killed_at)
    assert late > 0  # written by the new session
    for symbol in SYMBOLS:
        stored, sent = _stored_vs_sent(db, rec_sim, symbol)
        assert stored == sent  # the failed batch was kept and written with the next flush


def test_a_restarted_trade_task_refills_what_the_failed_one_missed(
    clean_database: Database, rec_sim: SimulatorServer
) -> None:
    """The first two refills after a disconnect fail, so the trade task fails twice; each
    restart goes on from the last trade seen, and the third refill brings the missed trades."""
    from goldrl_dagster.lib.bingx.errors import BingXError
    from goldrl_dagster.lib.bingx.rest import BingXRestClient

    db = clean_database
    rest = BingXRestClient(rec_sim.base_url, max_retries=0, sleep=lambda _: None)
    real, calls = rest.recent_trades, []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) <= 2:
            raise BingXError(500, "refill refused (test)", context="recent trades")
        return real(*args, **kwargs)

    rest.recent_trades = flaky  # type: ignore[method-assign]

    async def drop(_: Recorder) -> None:
        await asyncio.sleep(1.5)
        rec_sim.drop_connections()

    try:
        _, counters = record(
            db, rec_sim, 4.0, drop, rest_client=rest, instruments=("XAUT-USDT",)
        )
    finally:
        rest.close()
    assert len(calls) >= 3 and counters["task_failures"] >= 2
    assert counters["streams"]["XAUT-USDT@trade"]["refilled"] > 0
    stored, sent = _stored_vs_sent(db, rec_sim, "XAUT-USDT")
    assert stored == sent  # nothing the failed tasks missed is missing
    assert count(db, "SELECT count(*) FROM stream_gaps WHERE channel = 'trade'") == 0
