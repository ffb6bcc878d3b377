"""Funding intervals per settlement, feed gaps and quality checks, end to end on the simulator.

The simulator's funding history omits ``fundingIntervalHours`` like BingX's, and PAXG's
interval changes from 8 h to 4 h at 2025-03-08 16:00 UTC mid-history: the stored intervals
must follow each settlement. Missing settlements and mark-price minutes are found, recorded
with a reason, re-requested by their sensors, healed by the re-run, or given up as
unrecoverable; the GX suites bite on planted bad rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import pytest

from goldrl_dagster.defs import keys
from goldrl_dagster.defs.market_data.checks import (
    FUNDING_GAPS_CHECK,
    FUNDING_INTERVAL_CHECK,
    FUNDING_QUALITY_CHECK,
    MARK_PRICE_GAPS_CHECK,
    MARK_PRICE_QUALITY_CHECK,
    mark_price_freshness,
)
from goldrl_dagster.defs.market_data.gaps import (
    funding_gap_sensor,
    mark_price_gap_sensor,
    plan_heal,
)
from goldrl_dagster.defs.resources import BingXMarketData, GoldrlStorage
from goldrl_dagster.jobs_in_process import load_definitions
from goldrl_dagster.lib.bingx.models import PremiumIndex
from goldrl_dagster.lib.bingx.rest import FUNDING_RATE_PATH, PREMIUM_INDEX_PATH
from goldrl_dagster.lib.market.closures import NO_CLOSURES
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage import feeds_store as fs
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.gap_store import FUNDING_RATES, open_gaps

SYMBOL = "PAXG-USDT"
H = timedelta(hours=1)
CHANGE = datetime(2025, 3, 8, 16, tzinfo=UTC)
DAYS = ["2025-03-07", "2025-03-08", "2025-03-09"]
D8 = datetime(2025, 3, 8, tzinfo=UTC)
ANCHOR = datetime(2025, 3, 10, tzinfo=UTC)  # the simulator's present (as tests/conftest.py)


def partition(day: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"instrument": SYMBOL, "day": day})


def run(env, selection, day: str, *, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = env["defs"].resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=env["instance"],
        asset_selection=selection,
        partition_key=partition(day),
        raise_on_error=raise_on_error,
    )


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def stored_funding(db) -> list[tuple]:
    return read_frame(
        db,
        "SELECT funding_time, funding_interval_hours, funding_interval_source FROM funding_rates "
        "WHERE instrument = $1 ORDER BY funding_time",
        [SYMBOL],
    ).rows()


def _forget(db) -> None:
    with db.connect() as conn:
        conn.execute("DELETE FROM funding_rates WHERE instrument = %s", (SYMBOL,))
        conn.execute(
            "DELETE FROM candle_gaps WHERE instrument = %s AND feed <> 'candles'", (SYMBOL,)
        )
        conn.commit()


@pytest.fixture(scope="module")
def env(settings, database):
    from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer

    schedule = {"XAUT-USDT": 8, SYMBOL: [(0, 8), (int(CHANGE.timestamp() * 1000), 4)]}
    with SimulatorServer(
        seed=7,
        speed=60.0,
        anchor_ms=int(ANCHOR.timestamp() * 1000),
        funding_hours=schedule,  # type: ignore[arg-type]
    ) as server:
        mp = pytest.MonkeyPatch()
        mp.setenv("GOLDRL_BINGX_BASE_URL", server.base_url)
        mp.setenv("GOLDRL_BINGX_WS_URL", server.ws_url)
        mp.delenv("GOLDRL_VENUE_CLOSURES", raising=False)
        state = {
            "defs": load_definitions(),
            "instance": dg.DagsterInstance.ephemeral(),
            "db": open_runtime().db,
            "base_url": server.base_url,
        }
        _forget(state["db"])
        job = state["defs"].resolve_implicit_global_asset_job_def()
        job.execute_in_process(
            instance=state["instance"], asset_selection=[keys.INSTRUMENTS], raise_on_error=True
        )
        state["first"] = {day: run(state, [keys.FUNDING_RATES], day) for day in DAYS}
        yield state
        _forget(state["db"])
        mp.undo()


def test_the_simulated_history_omits_the_interval_and_the_premium_index_states_it(env):
    window = {
        "symbol": SYMBOL,
        "startTime": int((CHANGE - 16 * H).timestamp() * 1000),
        "endTime": int((CHANGE + 8 * H).timestamp() * 1000),
    }
    history = httpx.get(env["base_url"] + FUNDING_RATE_PATH, params=window).json()["data"]
    # endTime is inclusive: 00:00, 08:00, 16:00 (8 h), then 20:00 and 00:00 (4 h).
    assert len(history) == 5 and all("fundingIntervalHours" not in row for row in history)
    index = httpx.get(env["base_url"] + PREMIUM_INDEX_PATH, params={"symbol": SYMBOL}).json()
    assert index["data"]["fundingIntervalHours"] == 4  # the interval now, after the change


def test_each_settlement_gets_its_own_interval_across_the_change(env):
    rows = stored_funding(env["db"])
    times = [t for t, _, _ in rows]
    assert times == [D8 - 24 * H + k * 8 * H for k in range(6)] + [
        CHANGE + k * 4 * H for k in range(1, 8)
    ]
    # Never assumed: the first settlement ever fetched has no predecessor and stays unknown;
    # the 16:00 settlement still closed an 8 h period; from 20:00 on the periods last 4 h.
    expected = [None] + [8 if t <= CHANGE else 4 for t in times[1:]]
    assert [h for _, h, _ in rows] == expected
    assert {s for _, _, s in rows[1:]} == {"settlement_spacing"}
    first_day = checks(env["first"][DAYS[0]])
    assert not first_day[FUNDING_INTERVAL_CHECK].passed  # reported, as a WARN
    assert first_day[FUNDING_INTERVAL_CHECK].severity == dg.AssetCheckSeverity.WARN
    for day in DAYS:
        evaluations = checks(env["first"][day])
        assert evaluations[FUNDING_QUALITY_CHECK].passed, day
        assert evaluations[FUNDING_GAPS_CHECK].passed, day
    # When 03-08 was fetched, its 20:00 settlement (the first 4 h one) had one 4 h spacing
    # behind it and nothing after: ambiguous, so reported. 03-09's rows confirmed it.
    day2 = checks(env["first"][DAYS[1]])[FUNDING_INTERVAL_CHECK]
    assert day2.metadata["settlements"].value == [(CHANGE + 4 * H).isoformat()]
    day3 = env["first"][DAYS[2]].asset_materializations_for_node("market__funding_rates")[0]
    assert day3.metadata["neighbours_updated"].value == 1
    assert checks(env["first"][DAYS[2]])[FUNDING_INTERVAL_CHECK].passed


def _delete_settlement(db, at: datetime) -> None:
    with db.connect() as conn:
        conn.execute(
            "DELETE FROM funding_rates WHERE instrument = %s AND funding_time = %s", (SYMBOL, at)
        )
        conn.commit()


def _sensor_context(env) -> dg.SensorEvaluationContext:
    return dg.build_sensor_context(instance=env["instance"], resources={"storage": GoldrlStorage()})


def test_a_missing_settlement_is_recorded_requested_and_healed(env):
    db = env["db"]
    missing = CHANGE + 8 * H  # 2025-03-09 00:00, a 4 h settlement
    _delete_settlement(db, missing)
    result = funding_gap_sensor(_sensor_context(env))
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    assert request.partition_key == partition(DAYS[2])
    (gap,) = open_gaps(db, SYMBOL, "funding", D8, D8 + 48 * H, feed=FUNDING_RATES)
    assert (gap.gap_start, gap.missing_bars, gap.status) == (missing, 1, "healing")
    assert "4 h interval" in gap.reason
    healed = run(env, [keys.FUNDING_RATES], DAYS[2])
    assert checks(healed)[FUNDING_GAPS_CHECK].passed
    assert open_gaps(db, SYMBOL, "funding", D8, D8 + 48 * H, feed=FUNDING_RATES) == []
    assert missing in [t for t, _, _ in stored_funding(db)]


def test_a_settlement_the_exchange_never_returns_becomes_unrecoverable(env):
    db = env["db"]
    missing = CHANGE + 4 * H  # 20:00 on 2025-03-08
    _delete_settlement(db, missing)
    materialized = {SYMBOL: DAYS}
    now = datetime.now(UTC)
    plans = []
    for attempt in range(4):  # the heal runs never happen: every attempt settles unfilled
        plans.append(
            plan_heal(db, materialized, NO_CLOSURES, feed=FUNDING_RATES, now=now + attempt * 2 * H)
        )
    assert [list(p.requests) for p in plans[:3]] == [[(SYMBOL, DAYS[1])]] * 3
    (lost,) = plans[3].unrecoverable
    assert lost.gap_start == missing and "settlement(s) still missing" in lost.detail
    # The day's own run re-fetches it: an unrecoverable gap filled later is healed too.
    evaluations = checks(run(env, [keys.FUNDING_RATES], DAYS[1]))
    assert evaluations[FUNDING_GAPS_CHECK].passed


def test_the_funding_suite_bites_on_a_planted_off_grid_settlement(env):
    db = env["db"]
    planted = CHANGE + 2 * H  # 18:00 claims an 8 h interval: off its grid
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO funding_rates (instrument, funding_time, funding_rate, "
            "funding_interval_hours, funding_interval_source, source) "
            "VALUES (%s, %s, 0.0001, 8, 'reported', 'simulator')",
            (SYMBOL, planted),
        )
        conn.commit()
    try:
        result = run(env, [keys.FUNDING_RATES], DAYS[1], raise_on_error=False)
        assert not result.success  # the blocking check stops the run's downstream
        quality = checks(result)[FUNDING_QUALITY_CHECK]
        assert not quality.passed
        failures = quality.metadata["failures"].value
        assert {"grid_offset_ms"} <= {f["column"] for f in failures}
        assert planted.isoformat() in str(failures)
    finally:
        _delete_settlement(db, planted)
    assert checks(run(env, [keys.FUNDING_RATES], DAYS[1]))[FUNDING_QUALITY_CHECK].passed


def test_missing_mark_price_minutes_are_found_healed_and_checked(env):
    db = env["db"]
    day = DAYS[1]
    first = checks(run(env, [keys.MARK_PRICE_CANDLES], day))
    assert first[MARK_PRICE_QUALITY_CHECK].passed and first[MARK_PRICE_GAPS_CHECK].passed
    hole = D8 + 10 * H
    with db.connect() as conn:
        conn.execute(
            "DELETE FROM mark_price_candles WHERE instrument = %s AND interval = '1m' "
            "AND open_time >= %s AND open_time < %s",
            (SYMBOL, hole, hole + timedelta(minutes=3)),
        )
        conn.commit()
    result = mark_price_gap_sensor(_sensor_context(env))
    assert isinstance(result, dg.SensorResult)
    assert [r.partition_key for r in result.run_requests] == [partition(day)]
    (gap,) = open_gaps(db, SYMBOL, "1m", D8, D8 + 24 * H, feed="mark_price_candles")
    assert (gap.gap_start, gap.missing_bars) == (hole, 3)
    # The candle series of the same minutes is another series: untouched.
    assert open_gaps(db, SYMBOL, "1m", D8, D8 + 24 * H) == []
    healed = checks(run(env, [keys.MARK_PRICE_CANDLES], day))
    assert healed[MARK_PRICE_GAPS_CHECK].passed
    assert open_gaps(db, SYMBOL, "1m", D8, D8 + 24 * H, feed="mark_price_candles") == []


def test_mark_price_freshness_judges_the_newest_mark_price_bar(env, monkeypatch):
    storage = GoldrlStorage()
    bingx = BingXMarketData(storage=storage, base_url=env["base_url"])
    newest = read_frame(
        env["db"],
        "SELECT max(open_time) AS t FROM mark_price_candles WHERE instrument = $1 "
        "AND interval = '1m'",
        [SYMBOL],
    )["t"][0].astimezone(UTC)
    # The simulator's clock runs 60x: the newest stored bar is minutes to days old by now.
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "1")
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", "2")
    stale = mark_price_freshness(storage=storage, bingx=bingx)
    assert not stale.passed and stale.severity == dg.AssetCheckSeverity.ERROR
    series = {s["instrument"]: s for s in stale.metadata["series"].value}
    assert series[SYMBOL]["latest_open_time"] == newest.isoformat()
    assert series[SYMBOL]["level"] == "error"
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", str(30 * 24 * 60))
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", str(60 * 24 * 60))
    relaxed = mark_price_freshness(storage=storage, bingx=bingx)
    levels = {s["instrument"]: s["level"] for s in relaxed.metadata["series"].value}
    assert levels[SYMBOL] == "ok"


def test_a_premium_index_statement_wins_and_a_contradiction_is_a_finding(env):
    db = env["db"]
    settles = CHANGE + 12 * H  # 03-09 04:00, a 4 h settlement by its spacing
    snapshot = fs.premium_index_frame(
        [PremiumIndex(SYMBOL, ms(settles - H), 3000.0, 2999.0, 1e-4, ms(settles), 2)], "simulator"
    )
    fs.write_premium_index(db, snapshot)
    try:
        result = run(env, [keys.FUNDING_RATES], DAYS[2])
        row = next(r for r in stored_funding(db) if r[0] == settles)
        assert row[1:] == (2, "premium_index")
        findings = fs.read_findings(db, kind="funding_interval_conflict", instrument=SYMBOL)
        assert findings.height == 1
        finding = findings.row(0, named=True)
        assert finding["at"] == settles and '"spacing_hours": 4' in finding["detail"]
        conflicts = result.asset_materializations_for_node("market__funding_rates")[0].metadata
        assert conflicts["interval_conflicts"].value[0]["premium_index_hours"] == 2
        # Taken at its word, a 2 h period means 02:00 settled too: a missing settlement.
        assert not checks(result)[FUNDING_GAPS_CHECK].passed
    finally:
        with db.connect() as conn:
            conn.execute(
                "DELETE FROM premium_index_snapshots WHERE instrument = %s AND snapshot_time = %s",
                (SYMBOL, settles - H),
            )
            conn.execute(
                "DELETE FROM data_quality_findings WHERE instrument = %s "
                "AND kind = 'funding_interval_conflict'",
                (SYMBOL,),
            )
            conn.commit()
        _delete_settlement(db, settles)
    assert checks(run(env, [keys.FUNDING_RATES], DAYS[2]))[FUNDING_GAPS_CHECK].passed


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
