"""Materialize the whole asset graph on small simulated data against a real PostgreSQL."""

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
import pytest

from goldrl_dagster.defs import keys
from goldrl_dagster.defs.datasets.partitions import add_dataset_partition
from goldrl_dagster.jobs_in_process import load_definitions
from goldrl_dagster.lib import analytics_docs
from goldrl_dagster.lib.analytics_docs import DbtProjectPaths
from goldrl_dagster.lib.datasets.loading import load_dataset
from goldrl_dagster.lib.datasets.request import DatasetRequest
from goldrl_dagster.lib.features.spec import TA_V2
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.bulk import read_frame

DAYS = ["2025-03-08", "2025-03-09"]
SYMBOL = "XAUT-USDT"
WINDOW_START = datetime(2025, 3, 8, tzinfo=UTC)
WINDOW_END = datetime(2025, 3, 10, tzinfo=UTC)
REQUEST = DatasetRequest(
    instrument=SYMBOL,
    interval="1m",
    start_day=WINDOW_START.date(),
    end_day=WINDOW_END.date() - timedelta(days=1),
)


def _run(defs, instance, selection, **kwargs):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance, asset_selection=selection, raise_on_error=True, **kwargs
    )


def _meta(instance, key):
    event = instance.get_latest_materialization_event(key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _count(db, sql, *params):
    return read_frame(db, sql, list(params))[0, 0]


@pytest.fixture(scope="module")
def graph_run(settings, database, simulator, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    # The dbt asset writes its docs site here instead of into the checkout.
    docs = DbtProjectPaths(docs_dir=tmp_path_factory.mktemp("dbt_docs"))
    mp.setattr(analytics_docs, "default_paths", lambda: docs)
    mp.setenv("GOLDRL_BINGX_BASE_URL", simulator.base_url)
    mp.setenv("GOLDRL_BINGX_WS_URL", simulator.ws_url)
    runtime = open_runtime()
    for name, value in runtime.dbt_env().items():
        mp.setenv(name, value)
    defs = load_definitions()
    instance = dg.DagsterInstance.ephemeral()
    _run(defs, instance, [keys.INSTRUMENTS])
    checks = []
    for day in DAYS:
        result = _run(
            defs,
            instance,
            [keys.CANDLES, keys.FEATURE_SNAPSHOTS],
            partition_key=dg.MultiPartitionKey({"instrument": SYMBOL, "day": day}),
        )
        checks.extend(result.get_asset_check_evaluations())
    run_config = {"ops": {"models__trained_policy": {"config": {"total_timesteps": 1024}}}}
    dataset_key = add_dataset_partition(instance, REQUEST)
    _run(
        defs,
        instance,
        [keys.DATASET_VERSION, keys.TRAINED_POLICY, keys.EVALUATION_REPORT],
        partition_key=dataset_key,
        run_config=run_config,
    )
    _run(defs, instance, [keys.PROMOTED_MODEL], partition_key=SYMBOL)
    dbt_keys = [k for k in defs.resolve_all_asset_keys() if k.path[0] == keys.ANALYTICS_GROUP]
    _run(defs, instance, dbt_keys)
    yield {
        "defs": defs,
        "instance": instance,
        "db": runtime.db,
        "checks": checks,
        "dataset_key": dataset_key,
        "docs": docs,
    }
    mp.undo()


def test_candles_stored_once_per_minute_and_checked(graph_run):
    db = graph_run["db"]
    in_window = "instrument = $1 AND open_time >= $2 AND open_time < $3"
    bounds = [SYMBOL, WINDOW_START, WINDOW_END]
    assert _count(db, f"SELECT count(*) FROM candles WHERE {in_window}", *bounds) == 2 * 1440
    sources = read_frame(db, f"SELECT DISTINCT source FROM candles WHERE {in_window}", bounds)
    assert sources["source"].to_list() == ["simulator"]
    quality = [c for c in graph_run["checks"] if c.check_name == keys.CANDLES_QUALITY_CHECK]
    assert len(quality) == 2
    assert all(c.passed for c in quality)


def test_instrument_metadata_versioned_and_marked_simulated(graph_run):
    db = graph_run["db"]
    frame = read_frame(db, "SELECT symbol, source, valid_to, display_name FROM instruments")
    assert sorted(frame["symbol"].to_list()) == ["PAXG-USDT", "XAUT-USDT"]
    assert set(frame["source"]) == {"simulator"}
    assert frame["valid_to"].null_count() == 2


def test_rematerializing_a_partition_is_idempotent(graph_run):
    db = graph_run["db"]
    query = "SELECT open_time, close, ingested_at FROM candles ORDER BY open_time"
    before = read_frame(db, query)
    _run(
        graph_run["defs"],
        graph_run["instance"],
        [keys.CANDLES, keys.FEATURE_SNAPSHOTS],
        partition_key=dg.MultiPartitionKey({"instrument": SYMBOL, "day": DAYS[1]}),
    )
    after = read_frame(db, query)
    assert after.select("open_time", "close").equals(before.select("open_time", "close"))


def test_features_flag_warmup_only_where_history_is_missing(graph_run):
    db = graph_run["db"]
    spec = TA_V2
    frame = read_frame(
        db,
        "SELECT open_time, is_warmup FROM feature_snapshots WHERE fingerprint = $1 "
        "AND instrument = $2 AND open_time >= $3 AND open_time < $4 ORDER BY open_time",
        [spec.fingerprint, SYMBOL, WINDOW_START, WINDOW_END],
    )
    assert frame.height == 2 * 1440
    # A day warms up from the previous day's tail: day two always has it (day one); day one
    # has it only if another test stored the day before.
    first_day = frame.filter(frame["open_time"] < datetime(2025, 3, 9, tzinfo=UTC))
    second_day = frame.filter(frame["open_time"] >= datetime(2025, 3, 9, tzinfo=UTC))
    tail = _count(
        db,
        "SELECT count(*) FROM candles WHERE instrument = $1 AND interval = '1m' "
        "AND open_time >= $2 AND open_time < $3",
        SYMBOL,
        WINDOW_START - timedelta(minutes=spec.warmup_bars),
        WINDOW_START,
    )
    if tail == spec.warmup_bars:
        assert first_day["is_warmup"].sum() == 0
    else:
        assert first_day["is_warmup"].sum() >= spec.warmup_bars
    assert second_day["is_warmup"].sum() == 0


def test_feature_snapshots_are_checked_and_carry_statistics(graph_run):
    quality = [c for c in graph_run["checks"] if c.check_name == keys.FEATURES_QUALITY_CHECK]
    assert [c.asset_key for c in quality] == [keys.FEATURE_SNAPSHOTS] * 2
    assert all(c.passed and c.blocking for c in quality)
    meta = _meta(graph_run["instance"], keys.FEATURE_SNAPSHOTS)
    assert meta["leakage_checked_bars"] > 0 and meta["rows_written"] == 1440
    stats = read_frame(
        graph_run["db"],
        "SELECT day, feature, rows, count, missing_rate, q50 FROM feature_statistics "
        "WHERE fingerprint = $1 AND instrument = $2 AND day >= $3 AND day < $4 "
        "ORDER BY day, feature",
        [TA_V2.fingerprint, SYMBOL, WINDOW_START.date(), WINDOW_END.date()],
    )
    assert stats.filter(pl.col("day") == datetime(2025, 3, 9).date()).height == len(
        TA_V2.feature_names
    )
    assert (stats["missing_rate"] == 0.0).all() and (stats["count"] == stats["rows"]).all()


def test_dataset_version_is_registered_and_reproducible(graph_run):
    db, instance = graph_run["db"], graph_run["instance"]
    meta = _meta(instance, keys.DATASET_VERSION)
    row = read_frame(
        db,
        "SELECT row_count, feature_fingerprint, lineage->>'split_index' AS split "
        "FROM dataset_versions WHERE dataset_hash = $1",
        [meta["dataset_hash"]],
    )
    assert row.height == 1
    warmup = _count(
        db,
        "SELECT count(*) FROM feature_snapshots WHERE is_warmup AND instrument = $1 "
        "AND open_time >= $2 AND open_time < $3 AND fingerprint = $4",
        SYMBOL,
        WINDOW_START,
        WINDOW_END,
        REQUEST.spec.fingerprint,
    )
    assert row["row_count"][0] == 2 * 1440 - warmup == meta["rows"]
    assert int(row["split"][0]) == meta["train_rows"]
    # The request's feature set (ta v2, the default) is the snapshot asset the graph ran: the
    # build reads both days from the store instead of recomputing them.
    assert (meta["feature_days_computed"], meta["feature_days_cached"]) == (0, 2)
    lineage = meta["lineage"]
    assert lineage["feature_partitions"]["cached"] == [f"{d}|{SYMBOL}" for d in DAYS]
    assert lineage["feature_set"]["fingerprint"] == TA_V2.fingerprint == REQUEST.spec.fingerprint
    checks = lineage["quality_checks"]
    expected = {f"{d}|{SYMBOL}": "SUCCEEDED" for d in DAYS}
    assert checks[f"market/candles:{keys.CANDLES_QUALITY_CHECK}"] == expected
    assert checks[f"features/ta_v2_snapshots:{keys.FEATURES_QUALITY_CHECK}"] == expected
    _run(graph_run["defs"], instance, [keys.DATASET_VERSION], partition_key=REQUEST.partition_key())
    again = _meta(instance, keys.DATASET_VERSION)
    assert again["dataset_hash"] == meta["dataset_hash"]
    assert again["new_version"] is False
    table = load_dataset(open_runtime(), meta["dataset_hash"]).table
    assert table.columns[:7] == [
        "open_time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "funding_rate",
    ]
    assert table.height == meta["rows"]


def test_model_evaluation_and_promotion_are_linked(graph_run):
    db, instance = graph_run["db"], graph_run["instance"]
    model = _meta(instance, keys.TRAINED_POLICY)
    report = _meta(instance, keys.EVALUATION_REPORT)
    promotion = _meta(instance, keys.PROMOTED_MODEL)
    dataset_hash = _meta(instance, keys.DATASET_VERSION)["dataset_hash"]
    assert model["dataset_hash"] == dataset_hash
    # The policy and its evaluation are materialized under the dataset's own partition.
    for key in (keys.DATASET_VERSION, keys.TRAINED_POLICY, keys.EVALUATION_REPORT):
        event = instance.get_latest_materialization_event(key)
        assert event.dagster_event.partition == graph_run["dataset_key"]
    assert report["model_id"] == model["model_id"]
    stored = read_frame(
        db,
        "SELECT model_id, baseline_metrics FROM evaluation_reports WHERE report_id = $1",
        [report["report_id"]],
    )
    assert stored["model_id"][0] == model["model_id"]
    assert (
        "flat" in stored["baseline_metrics"][0] and "buy_and_hold" in stored["baseline_metrics"][0]
    )
    decision = read_frame(
        db,
        "SELECT promoted, reasons, instrument, interval, trials FROM promotion_decisions "
        "WHERE model_id = $1",
        [model["model_id"]],
    )
    assert decision.height == 1
    assert (decision["instrument"][0], decision["interval"][0]) == (SYMBOL, "1m")
    assert decision["trials"][0] >= 1 and promotion["trials"] == decision["trials"][0]
    # Two days of data (a held-out tail of hours) are not evidence: rejected, not promoted.
    assert promotion["promoted"] is False and not decision["promoted"][0]
    assert "evidence_trading_days" in promotion["failed_rules"]
    rules = {rule["rule"]: rule for rule in _jsonb(decision["reasons"][0])}
    assert {"evidence_trades", "excess_over_best_baseline", "deflated_sharpe",
            "action_entropy_at_least"} <= set(rules)  # fmt: skip
    assert rules["evidence_trading_days"]["threshold"] == 5.0
    assert promotion["rules"].startswith("| rule | holds | value | threshold | detail |")
    assert promotion["gate_plot"].startswith("![gate](data:image/png;base64,")
    assert read_frame(db, "SELECT model_id FROM champions").height == 0


def test_dbt_views_reflect_the_ingested_candles(graph_run):
    db = graph_run["db"]
    daily = read_frame(
        db,
        f'SELECT * FROM "{db.schema}_analytics".daily_ohlc WHERE instrument = $1 '
        "AND bar_date >= $2 AND bar_date < $3 ORDER BY bar_date",
        [SYMBOL, WINDOW_START.date(), WINDOW_END.date()],
    )
    assert daily.height == 2
    assert daily["bar_count"].to_list() == [1440, 1440]
    quality = read_frame(
        db,
        f'SELECT * FROM "{db.schema}_analytics".data_quality_daily WHERE instrument = $1 '
        "AND day >= $2 AND day < $3 ORDER BY day",
        [SYMBOL, WINDOW_START.date(), WINDOW_END.date()],
    )
    assert quality["bars_stored"].to_list() == [1440, 1440]
    assert quality["coverage_ratio"].to_list() == [1.0, 1.0]


def test_the_dbt_asset_generates_the_docs_site(graph_run):
    docs = graph_run["docs"]
    assert analytics_docs.docs_present(docs)
    catalog = json.loads((docs.docs_dir / "catalog.json").read_text())
    # The catalog comes from the database the build just wrote.
    assert "slippage_bps" in catalog["nodes"]["model.goldrl.fill_slippage"]["columns"]


def _jsonb(value):
    # jsonb may come back as text (ADBC) or already decoded.
    return json.loads(value) if isinstance(value, str) else value


def test_evaluation_report_stores_walk_forward_folds(graph_run):
    db, instance = graph_run["db"], graph_run["instance"]
    report = _meta(instance, keys.EVALUATION_REPORT)
    stored = read_frame(
        db,
        "SELECT folds, config, cost_model_fingerprint, policy_metrics, trades_sha256 "
        "FROM evaluation_reports WHERE report_id = $1",
        [report["report_id"]],
    )
    folds = _jsonb(stored["folds"][0])
    config = _jsonb(stored["config"][0])
    assert config["mode"] == "fixed" and report["mode"] == "fixed"
    assert len(folds) == config["folds"]["n_folds"] == report["folds"]
    assert all(fold["status"] == "ok" for fold in folds)
    assert {"policy", "flat", "buy_and_hold", "sma_cross"} == set(folds[0]["metrics"])
    assert stored["cost_model_fingerprint"][0] == report["cost_model_fingerprint"]
    policy = _jsonb(stored["policy_metrics"][0])
    assert policy["folds"] == len(folds)
    assert stored["trades_sha256"][0] == report["trades_sha256"]
    assert report["equity_curves"].startswith("![walk-forward equity](data:image/png;base64,")
    # What the gate reads: the daily PnL of every run and the policy's behaviour.
    extra = read_frame(
        db,
        "SELECT daily_pnl, diagnostics, instrument FROM evaluation_reports WHERE report_id = $1",
        [report["report_id"]],
    )
    daily = _jsonb(extra["daily_pnl"][0])
    assert set(daily) == {"policy", "flat", "buy_and_hold", "sma_cross"}
    assert sum(pnl for _, pnl in daily["policy"]) == pytest.approx(policy["net_pnl"], abs=1e-6)
    assert 0.0 <= _jsonb(extra["diagnostics"][0])["time_in_market"] <= 1.0
    assert extra["instrument"][0] == SYMBOL
