"""The dbt project, built for real with dbt-postgres against the migrated test database."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from dbt.cli.main import dbtRunnerResult
from dbt_support import (
    analytics,
    dbt_environment,
    drop_analytics_schema,
    failed_nodes,
    run_dbt,
    truncate_goldrl_tables,
)

from goldrl_dagster.lib.market.candles import INTERVAL_MS, conform_candles
from goldrl_dagster.lib.storage.bulk import upsert_frame
from goldrl_dagster.lib.storage.server import Database

T0 = datetime(2024, 1, 2, 23, 50, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(database: Database, tmp_path_factory: pytest.TempPathFactory):
    """Seed the source tables once and run one full `dbt build` for the read-only tests.

    Module-scoped because a build takes seconds; tests that change source data come last in
    this file and only add to it.
    """
    db = database
    tmp_path = tmp_path_factory.mktemp("dbt")
    with dbt_environment(db):
        truncate_goldrl_tables(db)
        candles = seed(db)
        result = run_dbt(tmp_path, "build")
        yield Built(db=db, tmp_path=tmp_path, candles=candles, result=result)
        truncate_goldrl_tables(db)
        drop_analytics_schema(db)


@dataclass(frozen=True)
class Built:
    db: Database
    tmp_path: Path
    candles: pl.DataFrame
    result: dbtRunnerResult


def freshness_statuses(result: dbtRunnerResult) -> list[str]:
    assert result.result is not None, result.exception
    return [str(r.status) for r in result.result.results]


# --- seed data ---------------------------------------------------------------------------------


def make_candles() -> pl.DataFrame:
    """PAXG 1m bars across a UTC midnight with a hole, plus a few XAUT 5m bars."""
    rng = np.random.default_rng(7)
    rows: list[dict[str, Any]] = []
    series = [
        ("PAXG-USDT", "1m", [T0 + timedelta(minutes=i) for i in range(16) if i != 12]),
        ("XAUT-USDT", "5m", [T0 + timedelta(minutes=5 * i) for i in range(4)]),
    ]
    for instrument, interval, times in series:
        price = 2000.0
        for t in times:
            o = price + rng.normal()
            c = o + rng.normal()
            rows.append(
                {
                    "instrument": instrument,
                    "interval": interval,
                    "open_time": t,
                    "open": o,
                    "high": max(o, c) + abs(rng.normal()),
                    "low": min(o, c) - abs(rng.normal()),
                    "close": c,
                    "volume": float(rng.integers(0, 50)),
                    "source": "bingx_rest",
                }
            )
            price = c
    # Shuffled on purpose: the first/last bar of a day must come from open_time, not row order.
    return conform_candles(pl.DataFrame(rows)).sample(fraction=1.0, shuffle=True, seed=3)


def expected_daily(candles: pl.DataFrame) -> pl.DataFrame:
    ordered = candles.sort("open_time")
    return (
        ordered.group_by("instrument", "interval", pl.col("open_time").dt.date().alias("bar_date"))
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
            pl.len().alias("bar_count"),
        )
        .with_columns(
            pl.col("interval")
            .replace_strict({k: max(86_400_000 // v, 1) for k, v in INTERVAL_MS.items()})
            .alias("expected_bars")
        )
        .with_columns((pl.col("bar_count") / pl.col("expected_bars")).alias("coverage_ratio"))
        .sort("instrument", "interval", "bar_date")
    )


def insert_instruments(db: Database) -> None:
    row = (
        "INSERT INTO instruments (symbol, valid_from, valid_to, asset, currency, price_precision, "
        "quantity_precision, min_quantity, min_notional, maker_fee_rate, taker_fee_rate, source, "
        "content_sha256, raw) VALUES (%s, %s, %s, 'PAXG', 'USDT', %s, 4, 0.001, 5, 0.0002, "
        "0.0005, 'bingx_rest', %s, '{}')"
    )
    with db.connect() as conn:
        conn.execute(row, ("PAXG-USDT", T0 - timedelta(days=30), T0, 1, "old"))
        conn.execute(row, ("PAXG-USDT", T0, None, 2, "new"))
        conn.commit()


REPORTS = {
    # report_id: (model_id, dataset, policy pnl, drawdown, trades, buy-and-hold pnl, flat pnl)
    "r_alpha": ("m_alpha", "d1", 120.0, 0.05, 14, 100.0, 0.0),
    "r_beta": ("m_beta", "d1", 90.0, 0.02, 9, 100.0, 0.0),
    "r_gamma": ("m_gamma", "d2", -5.0, 0.10, 30, -40.0, 0.0),
}
PROMOTIONS = [("m_alpha", "r_alpha", True), ("m_beta", "r_beta", False)]


def insert_models_and_reports(db: Database) -> None:
    with db.connect() as conn:
        conn.execute("INSERT INTO feature_sets VALUES ('fp', 'default', 1, ARRAY['r1'], '{}')")
        conn.execute("INSERT INTO artifacts VALUES ('sha', 'file:///x', 1, 'dataset')")
        for dataset in ("d1", "d2"):
            conn.execute(
                "INSERT INTO dataset_versions (dataset_hash, instruments, interval, window_start,"
                " window_end, feature_fingerprint, row_count, artifact_sha256, config, lineage)"
                " VALUES (%s, ARRAY['PAXG-USDT'], '1m', %s, %s, 'fp', 10, 'sha', '{}', '{}')",
                (dataset, T0, T0 + timedelta(days=1)),
            )
        for report_id, (model, dataset, pnl, dd, trades, bh, flat) in REPORTS.items():
            conn.execute(
                "INSERT INTO models (model_id, artifact_sha256, dataset_hash, feature_fingerprint,"
                " algorithm, seed, card) VALUES (%s, 'sha', %s, 'fp', 'PPO', 1, '{}')",
                (model, dataset),
            )
            policy = {
                "net_pnl": pnl,
                "max_drawdown": dd,
                "trade_count": trades,
                "win_rate": None,
                "total_fees": 1.5,
            }
            baselines = {
                "flat": {"net_pnl": flat, "max_drawdown": 0.0, "trade_count": 0},
                "buy_and_hold": {"net_pnl": bh, "max_drawdown": 0.07, "trade_count": 1},
            }
            conn.execute(
                "INSERT INTO evaluation_reports (report_id, model_id, dataset_hash, window_start,"
                " window_end, policy_metrics, baseline_metrics, trades_sha256, instrument,"
                " interval) VALUES (%s, %s, %s, %s, %s, %s, %s, 'tsha', 'PAXG-USDT', '1m')",
                (report_id, model, dataset, T0, T0, json.dumps(policy), json.dumps(baselines)),
            )
        for model, report, promoted in PROMOTIONS:
            conn.execute(
                "INSERT INTO promotion_decisions (model_id, report_id, promoted, reasons,"
                " instrument, interval) VALUES (%s, %s, %s, '[]', 'PAXG-USDT', '1m')",
                (model, report, promoted),
            )
        conn.commit()


SESSION_POSITIONS = {"s_paper": [0.0, 0.01, 0.01, 0.0, -0.01, -0.01], "s_idle": []}
# What became of each decision's order (the execution engine's outcome column).
OUTCOMES = [
    ("no order", None), ("filled BUY 0.01", "o-1"), ("blocked: max_order_notional", None),
    ("filled SELL 0.01", "o-3"), ("filled SELL 0.01", "o-4"), ("held: no new order: x", None),
]


def insert_live(db: Database) -> None:
    with db.connect() as conn:
        for session, positions in SESSION_POSITIONS.items():
            conn.execute(
                "INSERT INTO live_sessions (session_id, mode, instrument, stream_url)"
                " VALUES (%s, 'paper', 'PAXG-USDT', 'ws://sim')",
                (session,),
            )
            # Inserted newest first: the summary must order by bar time, not insertion.
            for i in reversed(range(len(positions))):
                conn.execute(
                    "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id,"
                    " model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action,"
                    " target_position, price, position_after, cash_after, equity_after, outcome,"
                    " client_order_id)"
                    " VALUES (%s, 'PAXG-USDT', %s, 'm_alpha', 'x', 'd1', 'fp', 'o', 0, 0, 2000,"
                    " %s, 0, %s, %s, %s)",
                    (session, T0 + timedelta(minutes=i), positions[i], 1000.0 + i, *OUTCOMES[i]),
                )
        conn.commit()


def seed(db: Database) -> pl.DataFrame:
    candles = make_candles()
    upsert_frame(db, "candles", candles, ["instrument", "interval", "open_time"])
    insert_instruments(db)
    insert_models_and_reports(db)
    insert_live(db)
    return candles


# --- tests -------------------------------------------------------------------------------------


def test_build_succeeds(built):
    assert built.result.success, failed_nodes(built.result)
    statuses = {r.node.name: str(r.status) for r in built.result.result.results}
    assert statuses["assert_daily_high_not_below_low"] == "pass"
    assert statuses["daily_ohlc_aggregates_bars_by_utc_day"] == "pass"  # the dbt unit test
    # XAUT has no contract metadata: the relationships test only warns.
    assert statuses[
        "relationships_daily_ohlc_instrument__symbol__ref_stg_market__instruments_"
    ] == ("warn")


def test_daily_ohlc_matches_python(built):
    daily = analytics(built.db, "daily_ohlc", "instrument, interval, bar_date")
    expected = expected_daily(built.candles)
    columns = expected.columns
    got = daily.select(columns).with_columns(pl.col("bar_count", "expected_bars").cast(pl.UInt32))
    assert got["bar_date"].to_list() == expected["bar_date"].to_list()
    for column in columns:
        if got.schema[column].is_float():
            np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy())
        else:
            assert got[column].to_list() == expected[column].cast(got.schema[column]).to_list()
    # The 1m day split at midnight: 10 bars on the 2nd, 5 of 6 on the 3rd (one hole).
    assert got.filter(pl.col("interval") == "1m")["bar_count"].to_list() == [10, 5]


def test_only_current_instrument_rows_are_staged(built):
    instruments = analytics(built.db, "stg_market__instruments", "symbol")
    assert instruments["symbol"].to_list() == ["PAXG-USDT"]
    assert instruments["price_precision"].to_list() == [2]  # the current row, not the old one


def test_leaderboard_ranks_and_excess_pnl(built):
    board = analytics(built.db, "evaluation_leaderboard", "rank")
    excess_bh = {r: pnl - bh for r, (_, _, pnl, _, _, bh, _) in REPORTS.items()}
    excess_flat = {r: pnl - flat for r, (_, _, pnl, _, _, _, flat) in REPORTS.items()}
    assert board["report_id"].to_list() == sorted(excess_bh, key=lambda r: -excess_bh[r])
    assert board["rank"].to_list() == [1, 2, 3]
    for row in board.iter_rows(named=True):
        report = row["report_id"]
        assert row["excess_pnl_vs_buy_and_hold"] == pytest.approx(excess_bh[report])
        assert row["excess_pnl_vs_flat"] == pytest.approx(excess_flat[report])
        assert row["policy_trade_count"] == REPORTS[report][4]
        assert row["model_id"] == REPORTS[report][0]
        assert row["algorithm"] == "PPO"
    promoted = {r: p for _, r, p in PROMOTIONS}
    assert dict(zip(board["report_id"], board["promoted"], strict=True)) == {
        r: promoted.get(r, False) for r in REPORTS
    }
    # Within dataset d1, alpha has the higher raw PnL.
    d1 = board.filter(pl.col("dataset_hash") == "d1").sort("dataset_rank")
    assert d1["report_id"].to_list() == ["r_alpha", "r_beta"]


def test_live_decision_summary(built):
    summary = analytics(built.db, "live_decision_summary", "session_id")
    by_session = {row["session_id"]: row for row in summary.iter_rows(named=True)}
    assert set(by_session) == set(SESSION_POSITIONS)
    positions = SESSION_POSITIONS["s_paper"]
    changes = sum(
        1 for before, after in zip([0.0, *positions], positions, strict=False) if before != after
    )
    paper = by_session["s_paper"]
    assert paper["decision_count"] == len(positions)
    assert paper["position_changes"] == changes
    assert paper["last_equity"] == 1000.0 + len(positions) - 1
    assert paper["last_position"] == positions[-1]
    assert paper["first_bar_open_time"] == T0
    assert paper["last_bar_open_time"] == T0 + timedelta(minutes=len(positions) - 1)
    assert (paper["orders_sent"], paper["blocked_by_risk"], paper["held"]) == (3, 1, 1)
    idle = by_session["s_idle"]
    assert idle["decision_count"] == 0
    assert idle["position_changes"] == 0
    assert idle["last_equity"] is None
    assert (idle["orders_sent"], idle["blocked_by_risk"], idle["held"]) == (0, 0, 0)


# The tests below change source data; they stay last so the read-only tests see the seed.


def test_bar_with_high_below_low_fails_the_singular_test(built):
    bad = conform_candles(
        pl.DataFrame(
            {
                "instrument": ["PAXG-USDT"],
                "interval": ["1m"],
                "open_time": [datetime(2024, 2, 1, tzinfo=UTC)],
                "open": [2000.0],
                "high": [1990.0],
                "low": [2010.0],
                "close": [2000.0],
                "volume": [1.0],
                "source": ["import"],
            }
        )
    )
    upsert_frame(built.db, "candles", bad, ["instrument", "interval", "open_time"])

    result = run_dbt(built.tmp_path, "build", "--select", "+daily_ohlc+")
    assert not result.success
    assert failed_nodes(result) == {"assert_daily_high_not_below_low"}


def test_candle_freshness_is_checked(built):
    # Seeded rows were ingested just now (ingested_at defaults to now()).
    fresh = run_dbt(built.tmp_path, "source", "freshness", "--select", "source:market.candles")
    assert fresh.success
    assert freshness_statuses(fresh) == ["pass"]
    with built.db.connect() as conn:
        conn.execute("UPDATE candles SET ingested_at = now() - interval '4 days'")
        conn.commit()
    stale = run_dbt(built.tmp_path, "source", "freshness", "--select", "source:market.candles")
    assert not stale.success
    assert freshness_statuses(stale) == ["error"]  # 4 days exceeds error_after (72 h)
