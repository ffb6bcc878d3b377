"""The analyst marts, built by real dbt on a small planted case whose numbers are known by hand.

One paper account trades PAXG-USDT on 2024-03-01 and 2024-03-02 under a champion (m_champ) and
then a canary challenger (m_chall, rollout 1 at a quarter size); fills go through the real
ledger (lib/storage/ledger_store), asset-check outcomes through a real Dagster run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dbt.cli.main import dbtRunnerResult
from dbt_support import (
    analytics,
    dbt_environment,
    drop_analytics_schema,
    failed_nodes,
    node_statuses,
    run_dbt,
    truncate_goldrl_tables,
)

from goldrl_dagster.instance import ensure_dagster_home
from goldrl_dagster.lib.market.candles import conform_candles
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.bulk import upsert_frame
from goldrl_dagster.lib.storage.fill_quality import fill_slippage_bps
from goldrl_dagster.lib.storage.ledger_store import (
    FillRecord,
    book_fill,
    book_funding_income,
    paper_fill_key,
)
from goldrl_dagster.lib.storage.server import Database

DAY1 = datetime(2024, 3, 1, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
SYMBOL = "PAXG-USDT"
ACCOUNT = "paper:default"


def at(hours: float, day: datetime = DAY1) -> datetime:
    return day + timedelta(hours=hours)


# --- planted data ------------------------------------------------------------------------------

# model_id: (report_id, policy pnl, buy-and-hold pnl)
MODELS = {"m_champ": ("r_champ", 50.0, 20.0), "m_chall": ("r_chall", 80.0, 20.0)}


def plant_governance(conn) -> None:
    conn.execute("INSERT INTO feature_sets VALUES ('fp', 'default', 1, ARRAY['rsi'], '{}')")
    conn.execute("INSERT INTO artifacts VALUES ('sha', 'file:///x', 1, 'dataset')")
    conn.execute(
        "INSERT INTO dataset_versions (dataset_hash, instruments, interval, window_start,"
        " window_end, feature_fingerprint, row_count, artifact_sha256, config, lineage)"
        " VALUES ('d1', ARRAY[%s], '1m', %s, %s, 'fp', 10, 'sha', '{}', '{}')",
        (SYMBOL, DAY1 - timedelta(days=5), DAY1),
    )
    for model, (report, pnl, bh) in MODELS.items():
        conn.execute(
            "INSERT INTO models (model_id, artifact_sha256, dataset_hash, feature_fingerprint,"
            " algorithm, seed, card) VALUES (%s, 'sha', 'd1', 'fp', 'PPO', 1, '{}')",
            (model,),
        )
        conn.execute(
            "INSERT INTO evaluation_reports (report_id, model_id, dataset_hash, window_start,"
            " window_end, policy_metrics, baseline_metrics, trades_sha256, instrument, interval)"
            " VALUES (%s, %s, 'd1', %s, %s, %s, %s, 't', %s, '1m')",
            (
                report, model, DAY1, DAY1,
                json.dumps({"net_pnl": pnl, "max_drawdown": 0.1, "trade_count": 3}),
                json.dumps({"flat": {"net_pnl": 0.0}, "buy_and_hold": {"net_pnl": bh}}),
                SYMBOL,
            ),
        )  # fmt: skip
    # decision 1 made m_champ the champion the day before; decision 2 passed m_chall.
    for decision_id, model, decided in ((1, "m_champ", at(-12)), (2, "m_chall", at(9.5))):
        conn.execute(
            "INSERT INTO promotion_decisions (decision_id, model_id, report_id, promoted, reasons,"
            " instrument, interval, decided_at) VALUES (%s, %s, %s, true, '[]', %s, '1m', %s)",
            (decision_id, model, MODELS[model][0], SYMBOL, decided),
        )
    conn.execute(
        "INSERT INTO champions (instrument, interval, model_id, decision_id)"
        " VALUES (%s, '1m', 'm_champ', 1)",
        (SYMBOL,),
    )
    conn.execute(
        "INSERT INTO rollouts (rollout_id, instrument, interval, challenger, stable_champion,"
        " decision_id, stage, canary_fraction, config, stage_started_at, started_at)"
        " VALUES (1, %s, '1m', 'm_chall', 'm_champ', 2, 'canary', 0.25, '{}', %s, %s)",
        (SYMBOL, at(12), at(10)),
    )
    for from_stage, to_stage, when in ((None, "shadow", at(10)), ("shadow", "canary", at(12))):
        conn.execute(
            "INSERT INTO rollout_transitions (rollout_id, from_stage, to_stage, reason,"
            " decided_by, at) VALUES (1, %s, %s, 'planted', 'test', %s)",
            (from_stage, to_stage, when),
        )


@dataclass(frozen=True)
class Trade:
    """A decision, its order and its fill (None: no order)."""

    name: str
    bar: datetime
    model: str
    rollout: int | None
    size_fraction: float
    decision_price: float
    position_after: float
    unrealised_after: float
    fill: tuple[str, str, str, str] | None  # side, quantity, price, fee


TRADES = [
    # champion, no rollout: buys 0.01 at 2001 against a close of 2000 → +5 bps (cost).
    Trade("d1", at(9), "m_champ", None, 1.0, 2000.0, 0.01, 0.0, ("BUY", "0.01", "2001", "0.01")),
    # champion while the challenger is in shadow: sells 0.01 at 2009 against 2010 → +4.975 bps;
    # closes the long opened at 2001: realised (2009 − 2001) × 0.01 = 0.08.
    Trade("d2", at(11), "m_champ", 1, 1.0, 2010.0, 0.0, 0.0, ("SELL", "0.01", "2009", "0.01")),
    # canary: sells 0.0025 at 2021 against 2020 → −4.950 bps (price improvement); short open,
    # marked at the close 2020: unrealised (2021 − 2020) × 0.0025 = 0.0025.
    Trade(
        "d3",
        at(13),
        "m_chall",
        1,
        0.25,
        2020.0,
        -0.0025,
        0.0025,
        ("SELL", "0.0025", "2021", "0.005"),
    ),
    # canary on day 2 after the operator flattened: flat, no order.
    Trade("d4", at(0.5, DAY2), "m_chall", 1, 0.25, 2030.0, 0.0, 0.0, None),
]
CASH_BEFORE = 1000.0


def plant_trading(conn) -> dict[str, int]:
    conn.execute(
        "INSERT INTO trading_accounts (account_id, mode, venue) VALUES (%s, 'paper', 'paper')",
        (ACCOUNT,),
    )
    conn.execute(
        "INSERT INTO live_sessions (session_id, mode, instrument, stream_url, account_id,"
        " started_at) VALUES ('s1', 'paper', %s, 'ws://sim', %s, %s)",
        (SYMBOL, ACCOUNT, at(8)),
    )
    ids: dict[str, int] = {}
    for trade in TRADES:
        order = f"o-{trade.name}" if trade.fill else None
        (ids[trade.name],) = conn.execute(
            "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id,"
            " model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action,"
            " target_position, price, position_after, cash_after, equity_after, decided_at,"
            " account_id, outcome, client_order_id, rollout_id, size_fraction)"
            " VALUES ('s1', %s, %s, %s, 'x', 'd1', 'fp', 'o', 0, 0, %s, %s, %s, %s, %s, %s,"
            " 'planted', %s, %s, %s) RETURNING decision_id",
            (
                SYMBOL, trade.bar, trade.model, trade.decision_price, trade.position_after,
                CASH_BEFORE, CASH_BEFORE + trade.unrealised_after,
                trade.bar + timedelta(seconds=5), ACCOUNT, order, trade.rollout,
                trade.size_fraction,
            ),
        ).fetchone()  # fmt: skip
    conn.commit()
    for trade in TRADES:
        if trade.fill:
            side, quantity, price, fee = trade.fill
            insert_order(conn, f"o-{trade.name}", ids[trade.name], "decision", side, quantity)
            filled_at = trade.bar + timedelta(seconds=6)
            fill(conn, f"o-{trade.name}", side, quantity, price, fee, filled_at)
    # The operator flattens the canary's short on day 2: buys 0.0025 at 2025, realised
    # (2021 − 2025) × 0.0025 = −0.01, fee 0.005; no decision behind it.
    insert_order(conn, "o-flatten", None, "flatten", "BUY", "0.0025")
    fill(conn, "o-flatten", "BUY", "0.0025", "2025", "0.005", at(0.2, DAY2))
    # Funding while short at 16:00 on day 1: paid 0.02 (booked −0.02) → the canary holds it.
    book_funding_income(conn, ACCOUNT, SYMBOL, at(16), Decimal("-0.02"))
    return ids


def insert_order(conn, order: str, decision: int | None, purpose: str, side: str, qty: str):
    conn.execute(
        "INSERT INTO orders (client_order_id, account_id, session_id, decision_id, purpose,"
        " instrument, side, order_type, quantity, reduce_only, contract_sha256, state,"
        " executed_qty) VALUES (%s, %s, 's1', %s, %s, %s, %s, 'MARKET', %s, false, 'c',"
        " 'filled', %s)",
        (order, ACCOUNT, decision, purpose, SYMBOL, side, Decimal(qty), Decimal(qty)),
    )
    conn.commit()


def fill(conn, order: str, side: str, qty: str, price: str, fee: str, when: datetime) -> None:
    record = FillRecord(
        fill_key=paper_fill_key(order, 1), client_order_id=order, account_id=ACCOUNT,
        instrument=SYMBOL, side=side, quantity=Decimal(qty), price=Decimal(price),
        fee=Decimal(fee), filled_at=when, source="paper",
    )  # fmt: skip
    assert book_fill(conn, record) is not None


def candle_rows(symbol: str, day: datetime, skip: range) -> pl.DataFrame:
    times = [day + timedelta(minutes=i) for i in range(1440) if i not in skip]
    n = len(times)
    return conform_candles(
        pl.DataFrame(
            {
                "instrument": [symbol] * n,
                "interval": ["1m"] * n,
                "open_time": times,
                "open": [2000.0] * n,
                "high": [2001.0] * n,
                "low": [1999.0] * n,
                "close": [2000.0] * n,
                "volume": [1.0] * n,
                "source": ["simulator"] * n,
            }
        )
    )


def plant_market(db: Database) -> None:
    # PAXG day 1 lacks 10 bars (a found gap), day 2 is complete; XAUT has a complete 2024-02-29.
    upsert_frame(db, "candles", candle_rows(SYMBOL, DAY1, range(600, 610)),
                 ["instrument", "interval", "open_time"])  # fmt: skip
    upsert_frame(db, "candles", candle_rows("XAUT-USDT", DAY1 - timedelta(days=1), range(0)),
                 ["instrument", "interval", "open_time"])  # fmt: skip
    upsert_frame(db, "candles", candle_rows(SYMBOL, DAY2, range(0)),
                 ["instrument", "interval", "open_time"])  # fmt: skip
    gaps = [
        (SYMBOL, at(10), at(10 + 10 / 60), 10, "found"),
        (SYMBOL, at(3), at(3 + 2 / 60), 2, "healed"),
        ("XAUT-USDT", at(1, DAY2), at(1 + 5 / 60, DAY2), 5, "unrecoverable"),
    ]
    findings = [
        ("interval_mismatch", SYMBOL, "5m", at(4), "warning"),
        ("incomplete_bucket", "XAUT-USDT", "", at(2, DAY2), "error"),
    ]
    with db.connect() as conn:
        for row in gaps:
            conn.execute(
                "INSERT INTO candle_gaps (instrument, interval, gap_start, gap_end, missing_bars,"
                " status) VALUES (%s, '1m', %s, %s, %s, %s)",
                row,
            )
        for row in findings:
            conn.execute(
                "INSERT INTO data_quality_findings (kind, instrument, interval, at, severity,"
                " detail) VALUES (%s, %s, %s, %s, %s, '{}')",
                row,
            )
        conn.commit()


# PSI of the feature rsi on three consecutive days, and its status.
DRIFT = [(date(2024, 2, 28), 0.05, "ok"), (date(2024, 2, 29), 0.30, "alert"),
         (date(2024, 3, 1), 0.40, "alert")]  # fmt: skip


def plant_drift(conn) -> None:
    rows = [(day, "rsi", psi, status) for day, psi, status in DRIFT]
    rows.append((date(2024, 3, 1), "atr", 0.01, "ok"))
    for day, feature, psi, status in rows:
        conn.execute(
            "INSERT INTO feature_drift_reports (instrument, interval, day, model_id, fingerprint,"
            " feature, psi, ks_statistic, ks_pvalue, count, missing_share, ood_share, status,"
            " reference_first_day, reference_last_day) VALUES (%s, '1m', %s, 'm_champ', 'fp',"
            " %s, %s, 0.1, 0.5, 1000, 0, 0.01, %s, '2024-02-01', '2024-02-20')",
            (SYMBOL, day, feature, psi, status),
        )


def plant_check_outcomes() -> None:
    """Three real Dagster runs of a stand-in candles asset.

    On PAXG × 2024-03-01 the first run passes every check, the second fails
    candles_no_open_gaps (ERROR severity): only the latest outcome of each check counts. On
    PAXG × 2024-03-02 the WARN-severity outlier check fails.
    """
    instance = dg.DagsterInstance.from_config(str(ensure_dagster_home(open_runtime())))
    partitions = dg.MultiPartitionsDefinition(
        {
            "instrument": dg.StaticPartitionsDefinition([SYMBOL, "XAUT-USDT"]),
            "day": dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC"),
        }
    )
    key = dg.AssetKey(["market", "candles"])
    outcome = {"gaps_pass": True, "outliers_pass": True}

    @dg.asset(
        key=key,
        partitions_def=partitions,
        check_specs=[
            dg.AssetCheckSpec("candles_quality", asset=key),
            dg.AssetCheckSpec("candles_no_open_gaps", asset=key),
            dg.AssetCheckSpec("candles_return_outliers", asset=key),
        ],
    )
    def candles() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(check_name="candles_quality", passed=True),
                dg.AssetCheckResult(check_name="candles_no_open_gaps", passed=outcome["gaps_pass"]),
                dg.AssetCheckResult(
                    check_name="candles_return_outliers",
                    passed=outcome["outliers_pass"],
                    severity=dg.AssetCheckSeverity.WARN,
                ),
            ]
        )

    runs = [("2024-03-01", True, True), ("2024-03-01", False, True), ("2024-03-02", True, False)]
    for day, gaps_pass, outliers_pass in runs:
        outcome.update(gaps_pass=gaps_pass, outliers_pass=outliers_pass)
        partition = dg.MultiPartitionKey({"instrument": SYMBOL, "day": day})
        result = dg.materialize([candles], instance=instance, partition_key=partition)
        assert result.success


@dataclass(frozen=True)
class Built:
    db: Database
    tmp_path: Path
    result: dbtRunnerResult
    decisions: dict[str, int]


@pytest.fixture(scope="module")
def marts(database: Database, tmp_path_factory: pytest.TempPathFactory):
    """Plant the case once and run one full `dbt build` (module-scoped: a build takes seconds)."""
    db = database
    tmp_path = tmp_path_factory.mktemp("marts")
    with dbt_environment(db), pytest.MonkeyPatch.context() as mp:
        mp.delenv("DAGSTER_HOME", raising=False)  # ensure_dagster_home sets it
        mp.setenv("DAGSTER_HOME", "")
        truncate_goldrl_tables(db)
        with db.connect() as conn:
            plant_governance(conn)
            plant_drift(conn)
            conn.commit()
            decisions = plant_trading(conn)
        plant_market(db)
        plant_check_outcomes()
        result = run_dbt(tmp_path, "build")
        yield Built(db=db, tmp_path=tmp_path, result=result, decisions=decisions)
        truncate_goldrl_tables(db)
        drop_analytics_schema(db)


# --- tests -------------------------------------------------------------------------------------


def test_the_build_passes_every_data_test(marts):
    assert marts.result.success, failed_nodes(marts.result)
    statuses = node_statuses(marts.result)
    for test in (
        "assert_fill_slippage_sign_convention",
        "assert_pnl_daily_reconciles_with_ledger",
        "not_null_fill_slippage_decision_price",
        "unique_combination_pnl_daily_pnl_date__account_id__instrument__model_id__stage",
    ):
        assert statuses[test] == "pass", test
    # Every planted table feeds a staging model that ran.
    for model in (
        "stg_market__candle_gaps",
        "stg_live__fills",
        "stg_dagster__check_executions",
        "stg_governance__rollout_transitions",
        "stg_monitoring__feature_drift_reports",
    ):
        assert statuses[model] == "success", model  # fmt: skip


def test_fill_slippage_is_signed_as_a_cost(marts):
    fills = analytics(marts.db, "fill_slippage", "filled_at")
    by_order = {row["client_order_id"]: row for row in fills.iter_rows(named=True)}
    assert set(by_order) == {"o-d1", "o-d2", "o-d3", "o-flatten"}
    # Worked by hand: side × (fill − decision) / decision × 10 000.
    assert by_order["o-d1"]["slippage_bps"] == pytest.approx(1 / 2000 * 1e4)  # bought above
    assert by_order["o-d2"]["slippage_bps"] == pytest.approx(1 / 2010 * 1e4)  # sold below
    assert by_order["o-d3"]["slippage_bps"] == pytest.approx(-1 / 2020 * 1e4)  # sold above
    assert by_order["o-d1"]["slippage_cost"] == pytest.approx(0.01)
    assert by_order["o-d3"]["slippage_cost"] == pytest.approx(-0.0025)
    assert [by_order[o]["stage"] for o in ("o-d1", "o-d2", "o-d3")] == [
        "champion", "champion", "canary",
    ]  # fmt: skip
    assert by_order["o-d1"]["mode"] == "paper"
    assert by_order["o-d1"]["decision_to_fill_ms"] == pytest.approx(1000.0)  # decided +5 s, +6 s
    flatten = by_order["o-flatten"]
    assert (flatten["purpose"], flatten["decision_price"], flatten["slippage_bps"]) == (
        "flatten", None, None,
    )  # fmt: skip
    # The same numbers as the performance monitor's fill quality (lib/storage/fill_quality).
    assert fill_slippage_bps(marts.db, SYMBOL, "m_champ", DAY1) == pytest.approx(
        [by_order["o-d1"]["slippage_bps"], by_order["o-d2"]["slippage_bps"]]
    )


def test_slippage_rolls_up_by_model_and_stage(marts):
    rollup = analytics(marts.db, "slippage_by_model_stage", "fill_date, model_id, stage")
    rows = {(r["model_id"], r["stage"]): r for r in rollup.iter_rows(named=True)}
    assert set(rows) == {("m_champ", "champion"), ("m_chall", "canary")}
    champ = rows[("m_champ", "champion")]
    assert champ["fill_count"] == 2
    assert champ["mean_slippage_bps"] == pytest.approx((1 / 2000 + 1 / 2010) / 2 * 1e4)
    notional = [0.01 * 2001, 0.01 * 2009]
    vwap = (notional[0] * 1 / 2000 + notional[1] * 1 / 2010) / sum(notional) * 1e4
    assert champ["vwap_slippage_bps"] == pytest.approx(vwap)
    assert champ["fees"] == pytest.approx(0.02)
    assert rows[("m_chall", "canary")]["slippage_cost"] == pytest.approx(-0.0025)


def test_pnl_by_day_model_and_stage(marts):
    pnl = analytics(marts.db, "pnl_daily", "pnl_date, model_id, stage")
    rows = {(r["pnl_date"], r["model_id"], r["stage"]): r for r in pnl.iter_rows(named=True)}
    d1, d2 = DAY1.date(), DAY2.date()
    assert set(rows) == {
        (d1, "m_champ", "champion"),
        (d1, "m_chall", "canary"),
        (d2, "m_chall", "canary"),
        (d2, "(unattributed)", "(unattributed)"),
    }
    champ = rows[(d1, "m_champ", "champion")]
    assert champ["realised_pnl"] == pytest.approx(0.08)  # (2009 − 2001) × 0.01
    assert champ["fees_paid"] == pytest.approx(0.02)
    assert champ["funding"] == 0
    assert champ["net_realised_pnl"] == pytest.approx(0.06)
    assert champ["unrealised_pnl"] is None  # the day's last decision was the canary's
    canary = rows[(d1, "m_chall", "canary")]
    assert canary["realised_pnl"] == 0
    assert canary["fees_paid"] == pytest.approx(0.005)
    assert canary["funding_paid"] == pytest.approx(0.02)  # the short held at 16:00 paid it
    assert canary["net_realised_pnl"] == pytest.approx(-0.025)
    assert canary["unrealised_pnl"] == pytest.approx(0.0025)  # short 0.0025 from 2021, at 2020
    assert canary["position_end_of_day"] == pytest.approx(-0.0025)
    flatten = rows[(d2, "(unattributed)", "(unattributed)")]
    assert flatten["realised_pnl"] == pytest.approx(-0.01)  # (2021 − 2025) × 0.0025
    assert flatten["net_realised_pnl"] == pytest.approx(-0.015)
    assert rows[(d2, "m_chall", "canary")]["unrealised_pnl"] == 0  # flat after the flatten
    assert set(pnl["mode"]) == {"paper"}
    # Everything the ledger booked is in the mart exactly once.
    total = 0.08 - 0.02 - 0.005 - 0.02 - 0.01 - 0.005
    assert pnl["net_realised_pnl"].sum() == pytest.approx(total)


def test_data_quality_by_instrument_and_day(marts):
    quality = analytics(marts.db, "data_quality_daily", "instrument, day")
    rows = {(r["instrument"], r["day"]): r for r in quality.iter_rows(named=True)}
    paxg = rows[(SYMBOL, DAY1.date())]
    assert (paxg["bars_stored"], paxg["bars_expected"], paxg["bars_missing"]) == (1430, 1440, 10)
    assert paxg["coverage_ratio"] == pytest.approx(1430 / 1440)
    assert (paxg["gaps_found"], paxg["gaps_healed"], paxg["gaps_open"]) == (1, 1, 1)
    assert paxg["open_gap_missing_bars"] == 10
    assert (paxg["findings_warning"], paxg["findings_error"]) == (1, 0)
    # The latest run failed the gap check; the other two passed both times.
    assert (paxg["checks_passed"], paxg["checks_failed"], paxg["checks_failed_error"]) == (2, 1, 1)
    assert paxg["failed_checks"] == "market/candles:candles_no_open_gaps"
    assert paxg["quality_status"] == "error"
    xaut_full = rows[("XAUT-USDT", date(2024, 2, 29))]
    assert (xaut_full["bars_stored"], xaut_full["coverage_ratio"]) == (1440, 1.0)
    assert xaut_full["quality_status"] == "ok"
    # A complete day whose only fault is a failed WARN-severity check: warn, not error.
    paxg_warned = rows[(SYMBOL, DAY2.date())]
    assert (paxg_warned["bars_stored"], paxg_warned["checks_failed"]) == (1440, 1)
    assert paxg_warned["checks_failed_error"] == 0
    assert paxg_warned["failed_checks"] == "market/candles:candles_return_outliers"
    assert paxg_warned["quality_status"] == "warn"
    xaut_bad = rows[("XAUT-USDT", DAY2.date())]
    assert xaut_bad["bars_stored"] == 0
    assert (xaut_bad["gaps_unrecoverable"], xaut_bad["findings_error"]) == (1, 1)
    assert xaut_bad["quality_status"] == "error"


def test_feature_drift_by_day_model_and_feature(marts):
    drift = analytics(marts.db, "feature_drift_daily", "feature, drift_date")
    rsi = drift.filter(pl.col("feature") == "rsi")
    assert rsi["drift_date"].to_list() == [day for day, _, _ in DRIFT]
    assert rsi["previous_psi"].to_list()[1:] == pytest.approx([0.05, 0.30])
    assert rsi["psi_change"].to_list()[2] == pytest.approx(0.10)
    assert rsi["alert_days_last_7"].to_list() == [0, 1, 2]
    assert drift["is_current_champion"].all()


def test_promotion_and_rollout_history(marts):
    history = analytics(marts.db, "promotion_rollout_history", "market_sequence")
    assert history["event_id"].to_list() == [
        "promotion_decision:1", "promotion_decision:2", "rollout_transition:1",
        "rollout_transition:2",
    ]  # fmt: skip
    assert history["outcome"].to_list() == ["promoted", "promoted", "shadow", "canary"]
    assert history["market_sequence"].to_list() == [1, 2, 3, 4]
    summary = analytics(marts.db, "rollout_summary", "rollout_id").row(0, named=True)
    assert summary["outcome"] == "in_progress"
    assert summary["shadow_hours"] == pytest.approx(2.0)  # shadow 10:00 → canary 12:00
    assert (summary["canary_decisions"], summary["canary_fills"]) == (2, 1)
    assert summary["canary_mean_slippage_bps"] == pytest.approx(-1 / 2020 * 1e4)


def test_leaderboard_knows_the_champion_and_the_market_rank(marts):
    board = analytics(marts.db, "evaluation_leaderboard", "market_rank")
    # Excess over buy-and-hold: m_chall 60 beats m_champ 30.
    assert board["model_id"].to_list() == ["m_chall", "m_champ"]
    assert board["is_current_champion"].to_list() == [False, True]
    assert board["instrument"].to_list() == [SYMBOL, SYMBOL]


def test_freshness_follows_each_feeds_loaded_at_field(marts):
    result = run_dbt(
        marts.tmp_path, "source", "freshness",
        "--select", "source:live.fills", "source:live.ledger_entries",
    )  # fmt: skip
    statuses = node_statuses(result)
    # Fills were recorded just now; the ledger's newest entry is the 2024-03-02 flatten.
    assert statuses == {"fills": "pass", "ledger_entries": "error"}


# The test below adds bad data; it stays last so the read-only tests see the planted case.


def test_a_decision_fill_without_its_decision_fails_the_build(marts):
    """A 'decision' order that lost its decision id leaves its fill without a decision price."""
    with marts.db.connect() as conn:
        insert_order(conn, "o-orphan", None, "decision", "BUY", "0.01")
        fill(conn, "o-orphan", "BUY", "0.01", "2002", "0.01", at(14))
    result = run_dbt(marts.tmp_path, "build", "--select", "fill_slippage")
    assert not result.success
    assert failed_nodes(result) == {
        "not_null_fill_slippage_decision_price",
        "not_null_fill_slippage_stage",
    }
