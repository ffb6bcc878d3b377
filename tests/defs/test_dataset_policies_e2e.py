"""Datasets on any interval, gap policies and proxy-period contract rules, end to end.

Vendor-style history (``import`` candles before the contract's listing) is written to the real
PostgreSQL, dataset versions are built with ``goldrl dataset build`` (materializing
``datasets/dataset_version`` in process) and a tiny policy is trained on them.
"""

import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from thin_market import thin_market_candles
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.datasets.gap_policy import CARRIED_FORWARD, SEGMENT
from goldrl_dagster.lib.datasets.loading import load_dataset
from goldrl_dagster.lib.evaluation.model_evaluation import EvaluationSettings, evaluate_model
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.train import TrainConfig
from goldrl_dagster.lib.rl.training_run import run_training
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.market_store import instrument_at, sync_instruments, write_candles

SYMBOL = "PAXG-USDT"
# Proxy history long before any listing the tests or the simulator use.
FIVE_MIN_FIRST = datetime(2019, 6, 1, tzinfo=UTC)
FIVE_MIN_DAYS = ("2019-06-02", "2019-06-03")
THIN_FIRST = datetime(2019, 7, 1, tzinfo=UTC)
THIN_DAYS = ("2019-07-02", "2019-07-03")
# Holes in the 1m thin market: 2 bars on the first dataset day, 1 bar on the second.
THIN_HOLES = ((1440 + 600, 2), (2 * 1440 + 300, 1))
# 5m history with a 2-bar hole on its first dataset day (10:20 UTC).
HOLED_FIRST = datetime(2019, 8, 1, tzinfo=UTC)
HOLED_DAYS = ("2019-08-02", "2019-08-03")
LISTED = datetime(2024, 1, 2, tzinfo=UTC)
RULES = InstrumentSpec(
    symbol=SYMBOL, asset="PAXG", currency="USDT", price_precision=2, quantity_precision=3,
    min_quantity=0.001, min_notional=5.0, maker_fee_rate=0.0002, taker_fee_rate=0.0005,
    max_long_leverage=20, max_short_leverage=20, launch_time=LISTED,
)  # fmt: skip
TINY = TrainConfig(
    total_timesteps=128, n_envs=1, n_steps=64, batch_size=64, episode_length=64, net_arch=(8,)
)


def _replace_candles(db, frame: pl.DataFrame, first: datetime, days: int) -> None:
    with db.connect() as conn:
        conn.execute(
            "DELETE FROM candles WHERE instrument = %s AND interval = %s AND open_time >= %s "
            "AND open_time < %s",
            (SYMBOL, frame["interval"][0], first, first + timedelta(days=days)),
        )
        conn.commit()
    write_candles(db, frame)


@pytest.fixture(scope="module")
def world(database, settings, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
    added_rules = False
    try:
        instrument_at(database, SYMBOL)
    except LookupError:
        sync_instruments(database, [RULES], "test", now=LISTED)
        added_rules = True
    five = thin_market_candles(3 * 288, 5, interval="5m", start=FIVE_MIN_FIRST, instrument=SYMBOL)
    _replace_candles(database, five, FIVE_MIN_FIRST, 3)
    thin = thin_market_candles(3 * 1440, 6, start=THIN_FIRST, instrument=SYMBOL, missing=THIN_HOLES)
    _replace_candles(database, thin, THIN_FIRST, 3)
    holed = thin_market_candles(
        3 * 288, 7, interval="5m", start=HOLED_FIRST, instrument=SYMBOL, missing=((400, 2),)
    )
    _replace_candles(database, holed, HOLED_FIRST, 3)
    yield {"db": database, "runner": CliRunner(), "tmp": tmp_path_factory.mktemp("rules")}
    mp.undo()
    with database.connect() as conn:
        ours = (
            "SELECT model_id FROM models WHERE dataset_hash IN (SELECT dataset_hash FROM "
            "dataset_versions WHERE instruments = ARRAY[%s] AND window_start < %s)"
        )
        conn.execute(
            f"DELETE FROM evaluation_reports WHERE model_id IN ({ours})",
            (SYMBOL, datetime(2020, 1, 1, tzinfo=UTC)),
        )
        conn.execute(
            "DELETE FROM models WHERE dataset_hash IN (SELECT dataset_hash FROM "
            "dataset_versions WHERE instruments = ARRAY[%s] AND window_start < %s)",
            (SYMBOL, datetime(2020, 1, 1, tzinfo=UTC)),
        )
        conn.execute(
            "DELETE FROM dataset_versions WHERE instruments = ARRAY[%s] AND window_start < %s",
            (SYMBOL, datetime(2020, 1, 1, tzinfo=UTC)),
        )
        if added_rules:
            conn.execute("DELETE FROM instruments WHERE source = 'test' AND symbol = %s", (SYMBOL,))
        conn.commit()
    if not database.embedded:
        with database.connect(autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{database.schema}_dagster" CASCADE')


def _build(world, days, *extra: str):
    return world["runner"].invoke(
        app,
        [
            "dataset", "build", "--instrument", SYMBOL, "--start", days[0], "--end", days[1],
            "--feature-set", "core:1", *extra,
        ],
    )  # fmt: skip


def _hash(output: str) -> str:
    line = next(line for line in output.splitlines() if line.startswith("dataset "))
    return line.split()[1]


@pytest.fixture(scope="module")
def five_minute(world):
    result = _build(world, FIVE_MIN_DAYS, "--interval", "5m")
    assert result.exit_code == 0, result.output
    return _hash(result.output)


def test_a_5m_import_builds_a_dataset_with_the_interval_in_config_and_hash(world, five_minute):
    dataset = load_dataset(open_runtime(), five_minute)
    record = dataset.record
    assert record.interval == "5m" and record.config["interval"] == "5m"
    assert "gap_policy" not in record.config and "rules_before_listing" not in record.config
    # Two days of 5m bars; the day before is the warm-up tail (core v1: 239 bars < 288).
    assert record.row_count == 2 * 288 == dataset.table.height
    spacing = dataset.table["open_time"].diff().drop_nulls().unique().to_list()
    assert spacing == [timedelta(minutes=5)]
    assert record.lineage["interval"] == "5m"
    assert record.lineage["gap_policy"] == {"policy": "refuse", "holes": 0, "missing_bars": 0}
    # Before the listing no exchange rules hold; the lineage says so instead of failing.
    assert "unavailable" in record.lineage["contract_rules"]
    again = _build(world, FIVE_MIN_DAYS, "--interval", "5m")
    assert again.exit_code == 0 and _hash(again.output) == five_minute
    assert "already registered" in again.output
    # A 5m dataset is a different version than any 1m one (the interval is hashed).
    key = record.lineage["partition_key"]
    assert key.split(":")[1] == "5m"


def test_training_refuses_history_before_listing_naming_the_choices(world, five_minute):
    with pytest.raises(LookupError, match="--rules-before-listing=earliest"):
        run_training(open_runtime(), five_minute, TINY)


@pytest.mark.slow
def test_earliest_rules_train_a_policy_on_5m_recorded_as_assumed(world):
    result = _build(world, FIVE_MIN_DAYS, "--interval", "5m", "--rules-before-listing", "earliest")
    assert result.exit_code == 0, result.output
    digest = _hash(result.output)
    runtime = open_runtime()
    record = load_dataset(runtime, digest).record
    assert record.config["rules_before_listing"] == "earliest"
    assert record.lineage["contract_rules"]["basis"] == "earliest_known"
    assert record.lineage["contract_rules"]["assumed"] is True
    outcome = run_training(runtime, digest, TINY)
    card = outcome.card
    assert (
        card["interval"] == "5m" and outcome.train_rows == load_dataset(runtime, digest).split_index
    )
    earliest = read_frame(
        runtime.db, "SELECT min(valid_from) AS first FROM instruments WHERE symbol = $1", [SYMBOL]
    )["first"][0]
    assert card["contract_rules"]["basis"] == "earliest_known"
    assert card["contract_rules"]["assumed"] is True
    assert (
        card["contract_rules"]["rules_sha256"]
        == instrument_at(runtime.db, SYMBOL, earliest).content_sha256()
    )
    assert card["instrument_rules_sha256"] == card["contract_rules"]["rules_sha256"]
    # The walk-forward evaluation in Nautilus finds the same rules for the held-out 5m bars.
    report = evaluate_model(runtime, outcome.model_id, settings=EvaluationSettings(n_folds=2))
    assert report.record.dataset_hash == digest
    assert len(report.record.folds) == 2


@pytest.mark.slow
def test_declared_proxy_rules_are_stored_used_and_carried_whole(world):
    path = world["tmp"] / "spot_gold_rules.json"
    declared = {
        "asset": "XAU", "currency": "USD", "price_precision": 2, "quantity_precision": 2,
        "min_quantity": 0.01, "min_notional": 1, "maker_fee_rate": 0.0001,
        "taker_fee_rate": 0.0003, "max_long_leverage": 10, "max_short_leverage": 10,
    }  # fmt: skip
    path.write_text(json.dumps(declared))
    result = _build(world, FIVE_MIN_DAYS, "--interval", "5m", "--rules-before-listing", str(path))
    assert result.exit_code == 0, result.output
    assert "declared contract rules" in result.output and "(assumed)" in result.output
    digest = _hash(result.output)
    runtime = open_runtime()
    record = load_dataset(runtime, digest).record
    policy = record.config["rules_before_listing"]
    assert policy.startswith("assumed:")
    lineage = record.lineage["contract_rules"]
    assert lineage["basis"] == "declared" and lineage["rules"]["taker_fee_rate"] == 0.0003
    shown = world["runner"].invoke(app, ["dataset", "show", digest])
    assert "contract rules declared (ASSUMED)" in shown.output
    # The same rules declared again are the same id: the same dataset version.
    again = _build(world, FIVE_MIN_DAYS, "--interval", "5m", "--rules-before-listing", str(path))
    assert again.exit_code == 0 and _hash(again.output) == digest
    outcome = run_training(runtime, digest, TINY)
    assert outcome.card["contract_rules"]["rules"]["taker_fee_rate"] == 0.0003
    assert outcome.card["contract_rules"]["assumed"] is True
    assert outcome.cost_model.taker_fee_rate == pytest.approx(0.0003)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--gaps", "fill"), "gap policy 'fill' is unknown"),
        (("--gaps", "carry_forward:0"), "1..1440"),
        (("--rules-before-listing", "/no/such/rules.json"), "nor a JSON rules file"),
        (("--rules-before-listing", "assumed:xyz"), "16 lower-case hex digits"),
    ],
)
def test_bad_policies_exit_2_naming_the_problem(world, args, message):
    result = _build(world, FIVE_MIN_DAYS, "--interval", "5m", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_thin_market_is_refused_by_default_naming_its_holes(world):
    result = _build(world, THIN_DAYS)
    assert result.exit_code == 1
    assert "2019-07-02 10:00" in result.output and "unhealed" in result.output


def test_segments_build_runs_between_holes_each_warmed_up_afresh(world):
    result = _build(world, THIN_DAYS, "--gaps", "segments")
    assert result.exit_code == 0, result.output
    dataset = load_dataset(open_runtime(), _hash(result.output))
    table, lineage = dataset.table, dataset.record.lineage
    assert dataset.record.config["gap_policy"] == "segments"
    assert lineage["gap_policy"] == {
        "policy": "segments", "holes": 2, "missing_bars": 3, "segments": 3,
    }  # fmt: skip
    assert table[SEGMENT].unique().sort().to_list() == [0, 1, 2]
    # Each run after a hole loses its first warm-up bars; nothing else is dropped.
    assert table.height == 2 * 1440 - 3 - 2 * 239
    first_of_run = table.filter(pl.col(SEGMENT) == 1)["open_time"][0]
    assert first_of_run == datetime(2019, 7, 2, 10, 2, tzinfo=UTC) + timedelta(minutes=239)
    again = _build(world, THIN_DAYS, "--gaps", "segments")
    assert _hash(again.output) == dataset.record.dataset_hash
    shown = world["runner"].invoke(app, ["dataset", "show", dataset.record.dataset_hash[:12]])
    assert shown.exit_code == 0, shown.output
    assert "policy segments: 2 hole(s), 3 missing bar(s), 3 segment(s)" in shown.output
    assert "gap_policy=segments" in shown.output
    assert "none valid at the window start (training refuses it)" in shown.output


@pytest.mark.slow
def test_a_policy_trains_on_segments_with_both_policies_on_the_card(world):
    result = _build(world, THIN_DAYS, "--gaps", "segments", "--rules-before-listing", "earliest")
    assert result.exit_code == 0, result.output
    outcome = run_training(open_runtime(), _hash(result.output), TINY)
    assert outcome.card["gap_policy"] == "segments"
    assert outcome.card["contract_rules"]["basis"] == "earliest_known"
    # The env closed the position at each segment end inside the training rows.
    constraints = outcome.card["bar_constraints"]
    assert constraints["carried_bars"] == 0
    assert 1 <= constraints["segment_ends"] <= 2


def test_carry_forward_fills_short_holes_with_flagged_flat_bars(world):
    result = _build(world, THIN_DAYS, "--gaps", "carry_forward:2")
    assert result.exit_code == 0, result.output
    dataset = load_dataset(open_runtime(), _hash(result.output))
    table = dataset.table
    assert dataset.record.config["gap_policy"] == "carry_forward:2"
    assert dataset.record.lineage["gap_policy"]["carried_forward_rows"] == 3
    assert table.height == 2 * 1440
    flat = table.filter(pl.col(CARRIED_FORWARD))
    assert flat["open_time"].to_list() == [
        datetime(2019, 7, 2, 10, 0, tzinfo=UTC),
        datetime(2019, 7, 2, 10, 1, tzinfo=UTC),
        datetime(2019, 7, 3, 5, 0, tzinfo=UTC),
    ]
    assert (flat["volume"] == 0.0).all() and (flat["high"] == flat["low"]).all()
    again = _build(world, THIN_DAYS, "--gaps", "carry_forward:2")
    assert _hash(again.output) == dataset.record.dataset_hash
    refused = _build(world, THIN_DAYS, "--gaps", "carry_forward:1")
    assert refused.exit_code == 1
    assert "longer than the carry_forward limit of 1" in refused.output
    assert "2019-07-02 10:00" in refused.output


def test_a_hole_in_5m_history_is_refused_or_built_around_by_policy(world):
    refused = _build(world, HOLED_DAYS, "--interval", "5m")
    assert refused.exit_code == 1
    assert "gap policy refuse" in refused.output
    assert "hole 2019-08-02 09:20..2019-08-02 09:30 UTC, 2 bar(s)" in refused.output
    built = _build(world, HOLED_DAYS, "--interval", "5m", "--gaps", "segments")
    assert built.exit_code == 0, built.output
    dataset = load_dataset(open_runtime(), _hash(built.output))
    assert dataset.record.lineage["gap_policy"]["segments"] == 2
    # The run after the hole warms up afresh: core v1's 239 bars of it are not rows.
    assert dataset.record.row_count == 2 * 288 - 2 - 239


def test_a_recorded_5m_gap_is_named_once_not_again_as_a_hole(world, database):
    from goldrl_dagster.lib.storage.gap_store import record_gaps, scan_stored_candles

    start = datetime.fromisoformat(HOLED_DAYS[0]).replace(tzinfo=UTC)
    scan = scan_stored_candles(database, SYMBOL, "5m", start, start + timedelta(days=2))
    (gap,) = record_gaps(database, scan)
    try:
        refused = _build(world, HOLED_DAYS, "--interval", "5m")
        assert refused.exit_code == 1
        assert "1 unhealed recorded gap(s) and 0 hole(s)" in refused.output
        assert f"gap {gap.gap_id}: 2019-08-02 09:20..09:30 UTC, 2 bar(s), found" in refused.output
        assert "hole 2019-08-02 09:20" not in refused.output
    finally:
        with database.connect() as conn:
            conn.execute("DELETE FROM candle_gaps WHERE gap_id = %s", (gap.gap_id,))
            conn.commit()


@pytest.mark.slow
def test_the_trained_policy_asset_trains_on_proxy_history_and_says_the_rules_are_assumed(world):
    from goldrl_dagster.defs.keys import TRAINED_POLICY
    from goldrl_dagster.jobs_in_process import JobRunError, goldrl_jobs, metadata_values

    jobs = goldrl_jobs()
    small = {"total_timesteps": 128, "n_envs": 1, "n_steps": 64, "batch_size": 64}
    run_config = {"ops": {"models__trained_policy": {"config": {**small, "episode_length": 64}}}}
    refused = _build(world, FIVE_MIN_DAYS, "--interval", "5m")
    key = load_dataset(open_runtime(), _hash(refused.output)).record.lineage["partition_key"]
    with pytest.raises(JobRunError, match="--rules-before-listing=earliest"):
        jobs.materialize([TRAINED_POLICY], partition_key=key, run_config=run_config)
    chosen = _build(world, FIVE_MIN_DAYS, "--interval", "5m", "--rules-before-listing", "earliest")
    key = load_dataset(open_runtime(), _hash(chosen.output)).record.lineage["partition_key"]
    result = jobs.materialize([TRAINED_POLICY], partition_key=key, run_config=run_config)
    event = result.get_asset_materialization_events()[0]
    meta = metadata_values(event.step_materialization_data.materialization)
    assert meta["contract_rules"] == "earliest_known (assumed)"
    assert meta["card"]["contract_rules"]["assumed"] is True
