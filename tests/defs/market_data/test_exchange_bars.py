"""The exchange's own hourly/daily bars: stored beyond the reach of 1m, canonical bars win.

Real assets against a private BingX simulator whose minute history reaches back 20 days only
(its hourly and daily bars to listing), and a real PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from goldrl_dagster.defs.market_data.aggregation import candles_multi_interval
from goldrl_dagster.defs.market_data.assets import candles, instruments
from goldrl_dagster.defs.market_data.exchange_bars import EXCHANGE_CANDLES, exchange_candles
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.market.aggregate import INTERVAL_MISMATCH
from goldrl_dagster.lib.market.candles import INTERVAL_MS, conform_candles
from goldrl_dagster.lib.market.exchange_bars import (
    check_exchange_intervals,
    fill_from_exchange,
    overlap_findings,
)
from goldrl_dagster.lib.storage.feeds_store import read_findings
from goldrl_dagster.lib.storage.market_store import (
    read_candles,
    read_candles_with_exchange,
    read_exchange_candles,
    write_candles,
    write_exchange_candles,
)

SYMBOL = "XAUT-USDT"
ANCHOR = datetime(2025, 3, 10, tzinfo=UTC)
OLD_DAY, NEW_DAY = "2025-01-20", "2025-03-07"


def make_candles(
    instrument: str, interval: str, start: datetime, n: int, source: str = "simulator"
) -> pl.DataFrame:
    """``n`` consistent bars of ``interval`` from ``start`` (close rising by 1 per bar)."""
    step = timedelta(milliseconds=INTERVAL_MS[interval])
    close = [3000.0 + i for i in range(n)]
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": instrument,
                "interval": interval,
                "open_time": [start + i * step for i in range(n)],
                "open": [c - 0.5 for c in close],
                "high": [c + 1.0 for c in close],
                "low": [c - 1.0 for c in close],
                "close": close,
                "volume": [10.0] * n,
                "source": source,
            }
        )
    )


def _day(day: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + timedelta(days=1)


def _key(day: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"instrument": SYMBOL, "day": day})


@pytest.fixture
def world(clean_database, monkeypatch) -> Iterator[dict]:
    monkeypatch.delenv("GOLDRL_VENUE_CLOSURES", raising=False)
    with SimulatorServer(seed=7, speed=60.0, anchor_ms=int(ANCHOR.timestamp() * 1000)) as sim:
        sim.market.set_history_depth({"1m": 20 * DAY_MS})
        storage = GoldrlStorage()
        defs = dg.Definitions(
            assets=[instruments, candles, candles_multi_interval, exchange_candles],
            resources={
                "storage": storage,
                "bingx": BingXMarketData(storage=storage, base_url=sim.base_url),
            },
        )
        job = defs.resolve_implicit_global_asset_job_def()
        instance = dg.DagsterInstance.ephemeral()

        def run(selection, day=None, **kwargs):
            return job.execute_in_process(
                instance=instance,
                asset_selection=selection,
                partition_key=_key(day) if day else None,
                raise_on_error=kwargs.pop("raise_on_error", True),
                **kwargs,
            )

        run([instruments.key])
        yield {"db": clean_database, "run": run, "instance": instance}


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    [mat] = [
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and e.event_specific_data.materialization.asset_key == EXCHANGE_CANDLES  # type: ignore[union-attr]
    ]
    return {k: v.value for k, v in mat.metadata.items()}


@pytest.mark.slow  # about 20-30 s: four real assets over two simulated days
def test_exchange_bars_stand_in_where_minutes_do_not_reach_and_never_replace_canonical(world):
    db, run = world["db"], world["run"]
    old_start, old_end = _day(OLD_DAY)

    # Beyond the exchange's minute history: no 1m bars, but the exchange's own bars are kept.
    empty = run([candles.key], OLD_DAY, raise_on_error=False)
    assert read_candles(db, SYMBOL, "1m", old_start, old_end).height == 0
    [note] = [
        e.event_specific_data.materialization.metadata["note"].value  # type: ignore[union-attr]
        for e in empty.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    ]
    assert "beyond its minute history" in note
    # The day is materialized (empty), so a backfill to listing counts it as done.
    done = world["instance"].get_materialized_partitions(candles.key)
    assert str(_key(OLD_DAY)) in done
    meta = _metadata(run([EXCHANGE_CANDLES], OLD_DAY))
    assert meta["rows_per_interval"] == {"1h": 24, "4h": 6, "1d": 1}
    assert meta["interval_mismatches"] == 0
    hours = read_candles_with_exchange(db, SYMBOL, "1h", old_start, old_end)
    assert hours.height == 24 and set(hours["origin"]) == {"exchange"}
    assert set(hours["source"]) == {"simulator"}
    assert read_candles(db, SYMBOL, "1h", old_start, old_end).height == 0  # not in candles

    # Within the minute history: the bars aggregated from 1m are canonical and agree.
    new_start, new_end = _day(NEW_DAY)
    run([candles.key], NEW_DAY)
    run(
        [candles_multi_interval.key],
        NEW_DAY,
        run_config={"ops": {"market__candles_multi_interval": {"config": {"cross_check": False}}}},
    )
    meta = _metadata(run([EXCHANGE_CANDLES], NEW_DAY))
    assert meta["overlapping_canonical"] == {"1h": 24, "4h": 6, "1d": 1}
    assert meta["interval_mismatches"] == 0
    filled = read_candles_with_exchange(db, SYMBOL, "1h", new_start, new_end)
    assert filled.height == 24 and set(filled["origin"]) == {"canonical"}

    # A canonical bar that disagrees with the exchange stays canonical; the difference is a
    # finding.
    tampered = new_start + timedelta(hours=5)
    with db.connect() as conn:
        conn.execute(
            "UPDATE candles SET high = high + 1 WHERE instrument = %s AND interval = '1h' "
            "AND open_time = %s",
            (SYMBOL, tampered),
        )
        conn.commit()
    meta = _metadata(run([EXCHANGE_CANDLES], NEW_DAY))
    assert meta["interval_mismatches"] == 1
    [finding] = read_findings(db, kind=INTERVAL_MISMATCH, instrument=SYMBOL).to_dicts()
    assert finding["interval"] == "1h" and finding["at"] == tampered
    assert set(json.loads(finding["detail"])["fields"]) == {"high"}
    exchange_bar = read_exchange_candles(db, SYMBOL, "1h", tampered, tampered + timedelta(hours=1))
    filled = read_candles_with_exchange(db, SYMBOL, "1h", tampered, tampered + timedelta(hours=1))
    assert filled["origin"][0] == "canonical"
    assert filled["high"][0] == pytest.approx(exchange_bar["high"][0] + 1)


def test_fill_prefers_canonical_and_findings_need_both_sides():
    start = datetime(2025, 2, 1, tzinfo=UTC)
    exchange = make_candles(SYMBOL, "1h", start, 6, source="bingx_rest")
    canonical = exchange.slice(3, 3).with_columns(pl.col("close") + 0.5)
    filled = fill_from_exchange(canonical, exchange)
    assert filled["origin"].to_list() == ["exchange"] * 3 + ["canonical"] * 3
    assert filled["close"][3:].to_list() == canonical["close"].to_list()
    findings = overlap_findings(canonical, exchange, 1e-6)
    assert [f["at"] for f in findings] == canonical["open_time"].to_list()
    assert all(set(f["detail"]["fields"]) == {"close"} for f in findings)
    # Bars on one side only are no finding (fallback, or beyond the exchange's depth).
    assert overlap_findings(exchange.slice(0, 2), exchange.slice(3, 3), 1e-6) == []


def test_bad_exchange_intervals_and_minute_bars_are_refused(clean_database):
    assert check_exchange_intervals(["4h", "1d", "4h"]) == ("4h", "1d")
    for bad in (["1m"], [], ["7h"]):
        with pytest.raises(ValueError, match="intervals above 1m"):
            check_exchange_intervals(bad)
    minutes = make_candles(SYMBOL, "1m", datetime(2025, 2, 1, tzinfo=UTC), 3)
    with pytest.raises(ValueError, match="1m bars go to candles"):
        write_exchange_candles(clean_database, minutes)


def test_read_fills_only_buckets_without_a_canonical_bar(clean_database):
    db = clean_database
    start = datetime(2025, 2, 1, tzinfo=UTC)
    exchange = make_candles(SYMBOL, "1h", start, 4, source="bingx_rest")
    assert write_exchange_candles(db, exchange) == 4
    assert write_exchange_candles(db, exchange) == 4  # idempotent upsert
    write_candles(
        db, exchange.slice(2, 2).with_columns(pl.col("high") + 2, source=pl.lit("import"))
    )
    filled = read_candles_with_exchange(db, SYMBOL, "1h", start, start + timedelta(hours=4))
    assert filled["origin"].to_list() == ["exchange", "exchange", "canonical", "canonical"]
    assert filled["source"].to_list() == ["bingx_rest", "bingx_rest", "import", "import"]
    assert read_exchange_candles(db, SYMBOL, "1h", start, start + timedelta(hours=4)).equals(
        exchange
    )
    minutes = make_candles(SYMBOL, "1m", start, 3)
    write_candles(db, minutes)
    base = read_candles_with_exchange(db, SYMBOL, "1m", start, start + timedelta(minutes=3))
    assert base.height == 3 and set(base["origin"]) == {"canonical"}
