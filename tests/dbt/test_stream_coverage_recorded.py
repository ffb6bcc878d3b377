"""stream_coverage_daily over what the real recorder stored from the simulator (slow).

The recorder records both gold contracts from the simulator for a few seconds while every
connection is dropped once and one incrDepth update id is skipped; then real dbt builds the
mart. Its records per instrument × channel must be the rows of the recorder's tables, its
gaps and resyncs the recorder's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from dbt_support import (
    analytics,
    dbt_environment,
    drop_analytics_schema,
    failed_nodes,
    run_dbt,
    truncate_goldrl_tables,
)

from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.recorder.service import Recorder
from goldrl_dagster.lib.storage.server import Database
from tests.support.recorder_support import ANCHOR_MS, config_for
from tests.support.stream_helpers import run

pytestmark = pytest.mark.slow

# (table, channel expression): the rows a channel stored, counted straight from its table.
CHANNEL_ROWS = """
    SELECT symbol, 'trade', count(*) FROM stream_trades GROUP BY 1
    UNION ALL SELECT symbol, 'kline_' || interval, count(*) FROM stream_klines GROUP BY 1, 2
    UNION ALL SELECT symbol, channel, count(*) FROM stream_book GROUP BY 1, 2
    UNION ALL SELECT symbol, 'ticker', count(*) FROM stream_tickers GROUP BY 1
    UNION ALL SELECT symbol, 'markPrice', count(*) FROM stream_mark_prices GROUP BY 1
    UNION ALL SELECT symbol, 'bookTicker', count(*) FROM stream_book_tickers GROUP BY 1
"""


@pytest.fixture()
def sim() -> Iterator[SimulatorServer]:
    """The recorder tests' simulator: 60x, quick pushes, no rate limits."""
    with SimulatorServer(
        seed=11, speed=60.0, anchor_ms=ANCHOR_MS, push_interval=0.05, ping_interval=2.0,
        rate_limits=None,
    ) as server:  # fmt: skip
        yield server


def test_the_mart_reconciles_with_a_real_recording(
    database: Database, sim: SimulatorServer, tmp_path: Path
) -> None:
    db = database
    truncate_goldrl_tables(db)
    recorder = Recorder(db, config_for(sim))

    async def faults() -> None:
        await asyncio.sleep(1.5)
        sim.drop_connections()
        await asyncio.sleep(1.5)
        sim.skip_next_update_ids(1)

    async def main() -> dict:
        side = asyncio.create_task(faults())
        counters = await recorder.run(asyncio.Event(), duration_seconds=5.0)
        await side
        return counters

    counters = run(main(), timeout=30.0)
    with db.connect() as conn:
        stored = {(r[0], r[1]): r[2] for r in conn.execute(CHANNEL_ROWS)}
        gaps = conn.execute(
            "SELECT count(*), coalesce(sum(extract(epoch FROM gap_end - gap_start)), 0) "
            "FROM stream_gaps"
        ).fetchone()
    try:
        with dbt_environment(db):
            result = run_dbt(
                tmp_path, "build", "--select", "+stream_coverage_daily",
                "--indirect-selection", "buildable",
            )  # fmt: skip
            assert result.success, failed_nodes(result)
            coverage = analytics(db, "stream_coverage_daily", "day, instrument, channel")
    finally:
        drop_analytics_schema(db)
        truncate_goldrl_tables(db)
    per_channel: dict[tuple[str, str], int] = {}
    for row in coverage.iter_rows(named=True):
        key = (row["instrument"], row["channel"])
        per_channel[key] = per_channel.get(key, 0) + row["records"]
    # Every channel of both contracts, with exactly the rows its table holds.
    assert {key for key, n in per_channel.items() if n} == set(stored)
    assert {channel for _, channel in stored} >= {
        "trade", "kline_1m", "depth20@100ms", "incrDepth", "ticker", "markPrice", "bookTicker",
    }  # fmt: skip
    assert per_channel == {key: stored.get(key, 0) for key in per_channel}
    # The recorder's own gaps and resyncs, nothing more.
    assert coverage["gaps"].sum() == gaps[0] > 0
    assert coverage["gap_seconds"].sum() == pytest.approx(float(gaps[1]))
    assert coverage["resyncs"].sum() == sum(counters["resyncs"].values()) == 1
    dropped = coverage.filter(coverage["gaps_disconnect"] > 0)
    assert {"ticker", "markPrice", "bookTicker"} <= set(dropped["channel"])
