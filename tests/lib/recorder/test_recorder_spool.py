"""The recorder's disk spool: bounded memory while the database is away, nothing lost.

The outage is the store's write raising what psycopg raises when the server is gone (the
session database is shared by the suite and cannot be stopped); everything else is real: the
simulator's streams, the spool files, the replay through the idempotent write into PostgreSQL.
"""

from __future__ import annotations

import asyncio
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.recorder import rows
from goldrl_dagster.lib.recorder.run import summary_line
from goldrl_dagster.lib.recorder.service import Recorder, RecorderConfig
from goldrl_dagster.lib.recorder.spool import Spool, SpoolError, load_batch
from goldrl_dagster.lib.storage.server import Database
from tests.support.recorder_support import config_for
from tests.support.stream_helpers import run

SYMBOL = "XAUT-USDT"


class Outage:
    """Makes the recorder's store fail every write while ``down`` is set."""

    def __init__(self) -> None:
        self.down = False
        self.refused = 0

    def attach(self, recorder: Recorder) -> None:
        store = recorder._store
        assert store is not None
        write = store.write

        def failing(batch: dict[str, list[tuple]]) -> dict[str, int]:
            if self.down:
                self.refused += 1
                raise psycopg.OperationalError("connection refused (test outage)")
            return write(batch)

        store.write = failing  # type: ignore[method-assign]


def _record(db: Database, config: RecorderConfig, seconds: float, during) -> dict[str, Any]:
    recorder = Recorder(db, config)

    async def main() -> dict[str, Any]:
        side = asyncio.create_task(during(recorder))
        counters = await recorder.run(asyncio.Event(), duration_seconds=seconds)
        await side
        return counters

    return run(main(), timeout=seconds + 20.0)


async def _attached(recorder: Recorder, outage: Outage) -> None:
    while recorder._store is None:
        await asyncio.sleep(0.01)
    outage.attach(recorder)


def _trades(db: Database) -> list[tuple]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT (extract(epoch FROM time) * 1000)::bigint, price, quantity, is_buyer_maker "
            "FROM stream_trades WHERE symbol = %s ORDER BY time",
            (SYMBOL,),
        ).fetchall()


def _sent(sim: SimulatorServer, stored: list[tuple]) -> list[tuple]:
    first, last = stored[0][0], stored[-1][0]
    return [
        (t.time_ms, t.price, t.quantity, t.is_buyer_maker)
        for t in sim.feeds.trades_between(SYMBOL, first - 1, last)
    ]


def test_an_outage_beyond_the_memory_bound_spools_and_replays_every_row(
    clean_database: Database, rec_sim: SimulatorServer, tmp_path: Path
) -> None:
    db, outage = clean_database, Outage()
    config = config_for(
        rec_sim, instruments=(SYMBOL,), max_batch=50, max_buffered_rows=200,
        spool_dir=tmp_path / "spool",
    )  # fmt: skip

    async def during(recorder: Recorder) -> None:
        await _attached(recorder, outage)
        await asyncio.sleep(0.5)
        outage.down = True
        await asyncio.sleep(2.0)
        assert recorder._buffered <= config.max_buffered_rows + config.max_batch * 10
        outage.down = False

    counters = _record(db, config, 4.0, during)
    assert outage.refused >= 2
    assert counters["spooled_rows"] > config.max_buffered_rows  # the bound was crossed
    assert counters["replayed_rows"] == counters["spooled_rows"]
    assert list((tmp_path / "spool").iterdir()) == []  # each file deleted once committed
    stored = [tuple(r) for r in _trades(db)]
    assert stored == _sent(rec_sim, stored)  # every trade once, none lost to the outage


def test_rows_the_database_cannot_take_at_shutdown_wait_in_the_spool_for_the_next_start(
    clean_database: Database, rec_sim: SimulatorServer, tmp_path: Path
) -> None:
    db, outage = clean_database, Outage()
    spool = tmp_path / "spool"
    config = config_for(rec_sim, instruments=(SYMBOL,), spool_dir=spool)

    async def down_to_the_end(recorder: Recorder) -> None:
        await _attached(recorder, outage)
        outage.down = True

    first = _record(db, config, 1.5, down_to_the_end)
    assert first["spooled_rows"] > 0 and first["replayed_rows"] == 0
    assert _trades(db) == []
    files = sorted(spool.iterdir())
    assert files and all(f.suffix == ".batch" for f in files)
    spooled_rows = [r for f in files for r in load_batch(f).get("stream_trades", [])]
    assert spooled_rows
    assert f"{first['spooled_rows']} rows wait in the spool" in summary_line(first)

    async def nothing(_: Recorder) -> None:
        return None

    second = _record(db, config, 1.0, nothing)  # the database is back
    assert second["replayed_rows"] == first["spooled_rows"]
    assert list(spool.iterdir()) == []
    with db.connect() as conn:
        keys = {tuple(k) for k in conn.execute(
            "SELECT symbol, content_key, occurrence FROM stream_trades"
        )}  # fmt: skip
    assert {r[:3] for r in spooled_rows} <= keys  # every spooled trade is stored
    # The first run's trades are those the simulator sent up to its last one (the second
    # run's follow a hole between the two processes that nobody recorded).
    last_ms = max(int(r[3].timestamp() * 1000) for r in spooled_rows)
    first_run = [tuple(r) for r in _trades(db) if r[0] <= last_ms]
    assert first_run == _sent(rec_sim, first_run)


def _trade_batch(n: int) -> dict[str, list[tuple]]:
    t0 = int(datetime(2025, 3, 10, tzinfo=UTC).timestamp() * 1000)
    book = [("PAXG-USDT", "incrDepth", rows.utc(t0 + i), i, 3000.0, 3000.5,
             [[3000.0, 1.5]], [[3000.5, 2.0]]) for i in range(n)]  # fmt: skip
    return {"stream_book": book, "stream_trades": []}


def test_a_spooled_batch_reads_back_as_written_and_a_crash_leftover_is_dropped(tmp_path):
    spool = Spool(tmp_path)
    batch = _trade_batch(3)
    path = spool.put(batch)
    (tmp_path / "00000000000000000001-1.tmp").write_bytes(b"half a batch")
    assert spool.pending() == [path]
    assert not list(tmp_path.glob("*.tmp"))
    assert load_batch(path) == {"stream_book": batch["stream_book"]}  # empty tables left out


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"\x80\x05truncated", "not a readable batch"),
        (pickle.dumps(print), "refers to builtins.print, which stream rows never hold"),
        (pickle.dumps(["rows"]), "holds a list, not rows per table"),
        (pickle.dumps({"orders": []}), "unknown table 'orders'"),
        (pickle.dumps({"stream_trades": [["not", "a", "tuple"]]}), "not a list of tuples"),
    ],
)
def test_a_file_that_is_not_a_batch_is_refused_by_name(tmp_path, content, said):
    path = tmp_path / "00000000000000000007-1.batch"
    path.write_bytes(content)
    with pytest.raises(SpoolError, match=f"^{path.name}: .*{said}"):
        load_batch(path)


def test_replay_sets_a_bad_file_aside_and_writes_the_good_ones(
    clean_database: Database, rec_sim: SimulatorServer, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    (spool.directory / "00000000000000000001-1.batch").write_bytes(pickle.dumps(print))
    spool.put(_trade_batch(4))
    config = config_for(rec_sim, instruments=(SYMBOL,), spool_dir=spool.directory)

    async def nothing(_: Recorder) -> None:
        return None

    counters = _record(clean_database, config, 1.0, nothing)
    assert counters["spool_bad_files"] == 1 and counters["replayed_rows"] == 4
    assert [p.name for p in spool.directory.iterdir()] == ["00000000000000000001-1.bad"]
    with clean_database.connect() as conn:
        stored = conn.execute(
            "SELECT count(*) FROM stream_book WHERE symbol = 'PAXG-USDT'"
        ).fetchone()
    assert stored == (4,)


def test_a_memory_bound_below_one_batch_is_refused(rec_sim: SimulatorServer) -> None:
    with pytest.raises(ValueError, match=r"max_buffered_rows must be >= max_batch \(5000\)"):
        config_for(rec_sim, max_buffered_rows=10)
