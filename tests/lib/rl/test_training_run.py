"""A training run over a registered dataset version, against a real PostgreSQL."""

import dataclasses
import json
from datetime import timedelta

import polars as pl
import pytest
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.datasets.build import (
    DatasetConfig,
    assemble_dataset,
    dataset_hash,
    parquet_bytes,
)
from goldrl_dagster.lib.datasets.inspection import find_dataset
from goldrl_dagster.lib.features.pipeline import compute_features
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.train import TrainConfig
from goldrl_dagster.lib.rl.training_run import (
    CostSettings,
    load_training_data,
    run_training,
)
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.market_store import sync_instruments
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    load_dataset_record,
    load_model_record,
    record_dataset,
    register_feature_set,
)
from tests.support.candle_factory import DEFAULT_START, random_walk_candles

SPEC = InstrumentSpec(
    symbol="PAXG-USDT",
    asset="PAXG",
    currency="USDT",
    price_precision=2,
    quantity_precision=3,
    min_quantity=0.001,
    min_notional=5.0,
    maker_fee_rate=0.0002,
    taker_fee_rate=0.0005,
    max_long_leverage=20,
    max_short_leverage=20,
)
TINY = TrainConfig(
    total_timesteps=256, n_envs=2, n_steps=64, batch_size=64, episode_length=64, net_arch=(8,)
)


@pytest.fixture(scope="module")
def dataset(settings, database):
    """A registered 600-bar dataset version with a funding column, and the instrument rules."""
    runtime = open_runtime()
    sync_instruments(runtime.db, [SPEC], "test", now=DEFAULT_START - timedelta(days=1))
    feature_set = DEFAULT_FEATURE_SET
    candles = random_walk_candles(600, seed=41)
    table = assemble_dataset(candles, compute_features(candles, feature_set), feature_set)
    # One funding event settles in every 60th bar.
    table = table.with_columns(
        pl.Series("funding_rate", [1e-4 if i % 60 == 59 else 0.0 for i in range(table.height)])
    )
    end = DEFAULT_START + timedelta(minutes=600)
    config = DatasetConfig("PAXG-USDT", "1m", DEFAULT_START, end, feature_set.fingerprint)
    artifact = runtime.artifacts.put_bytes(parquet_bytes(table), ".parquet")
    digest = dataset_hash(artifact.sha256, config)
    register_feature_set(
        runtime.db, feature_set.fingerprint, feature_set.name, feature_set.version,
        list(feature_set.feature_names), feature_set.canonical_json(),
    )  # fmt: skip
    split = table.height * 3 // 4
    record = DatasetRecord(
        digest, ["PAXG-USDT"], "1m", DEFAULT_START, end, feature_set.fingerprint,
        table.height, artifact, json.loads(config.canonical_json()), {"split_index": split},
    )  # fmt: skip
    record_dataset(runtime.db, record)
    yield runtime, digest, table, split
    # The session database is shared: leave no instrument, dataset or model rows behind.
    with runtime.db.connect() as conn:
        conn.execute("DELETE FROM models WHERE dataset_hash = %s", (digest,))
        conn.execute("DELETE FROM dataset_versions WHERE dataset_hash = %s", (digest,))
        conn.execute("DELETE FROM instruments WHERE source = 'test'")
        conn.commit()


def test_training_data_is_the_training_part_with_ranges_and_funding(dataset):
    runtime, digest, table, split = dataset
    data = load_training_data(runtime, digest)
    assert data.rows == split
    assert data.features.shape == (split, len(DEFAULT_FEATURE_SET.feature_names))
    assert data.closes.tolist() == table["close"].head(split).to_list()
    head = table.head(split)
    expected = ((head["high"] - head["low"]) / head["close"]).to_list()
    assert data.bar_ranges.tolist() == pytest.approx(expected)
    assert data.funding_rates is not None and data.funding_rates.sum() == pytest.approx(
        1e-4 * (split // 60)
    )


def test_run_is_registered_with_the_cost_model_fingerprint_and_is_reproducible(dataset):
    runtime, digest, _, _ = dataset
    costs = CostSettings(slippage_bps=2.0, slippage_range_fraction=0.1, leverage=2.0)
    calls: list[tuple[int, int]] = []
    first = run_training(runtime, digest, TINY, costs, lambda d, t: calls.append((d, t)))
    expected_costs = CostModel.from_instrument(
        SPEC, slippage_bps=2.0, slippage_range_fraction=0.1, leverage=2.0
    )
    assert first.cost_model == expected_costs
    record = load_model_record(runtime.db, first.model_id)
    assert record.cost_model_fingerprint == expected_costs.fingerprint
    assert record.dataset_hash == digest
    assert record.card["cost_model_fingerprint"] == expected_costs.fingerprint
    assert record.card["dataset_hash"] == digest
    assert record.card["feature_fingerprint"] == DEFAULT_FEATURE_SET.fingerprint
    assert record.card["funding_charged"] is True
    assert record.card["seed"] == 0
    assert runtime.artifacts.path_for(first.artifact).is_file()
    assert calls and calls[-1][0] >= TINY.total_timesteps
    again = run_training(runtime, digest, TINY, costs)
    assert (again.model_id, again.weights_sha256) == (first.model_id, first.weights_sha256)


def test_dataset_prefixes_resolve_or_fail_clearly(dataset):
    # goldrl train resolves --dataset with the dataset CLI's lookup.
    runtime, digest, _, _ = dataset
    assert find_dataset(runtime.db, digest[:10].upper()).dataset_hash == digest
    with pytest.raises(LookupError, match="hash prefix of at least 4 hex"):
        find_dataset(runtime.db, "xyz")
    absent = "0000" if not digest.startswith("0000") else "ffff"
    with pytest.raises(LookupError, match="no dataset version"):
        find_dataset(runtime.db, absent + "0" * 20)


def test_cli_trains_by_dataset_prefix(dataset):
    _, digest, _, _ = dataset
    args = [
        "--timesteps",
        "512",
        "--seed",
        "3",
        "--episode-length",
        "128",
        "--checkpoint-every",
        "256",
    ]
    result = CliRunner().invoke(app, ["train", "--dataset", digest[:8], *args])
    assert result.exit_code == 0, result.output
    assert f"on dataset {digest[:12]}" in result.output
    assert "weights sha256" in result.output
    model_id = result.output.split("model ", 1)[1].split(":", 1)[0]
    record = load_model_record(open_runtime().db, model_id)
    assert record.card["seed"] == 3 and record.card["timesteps_done"] >= 512
    assert record.card["config"]["episode_length"] == 128
    assert [c["timesteps"] for c in record.card["checkpoints"]][:1] == [256]


def test_cli_refuses_an_unknown_dataset(dataset):
    result = CliRunner().invoke(app, ["train", "--dataset", "not-hex"])
    assert result.exit_code == 2
    assert "hash prefix of at least 4 hex" in result.output


def test_asset_run_config_maps_onto_train_config_and_cost_settings():
    from goldrl_dagster.defs.training.assets import TrainedPolicyConfig

    assert TrainedPolicyConfig().train_config() == TrainConfig()
    config = TrainedPolicyConfig(algorithm="A2C", net_arch=[8, 8], leverage=2.0, seed=4)
    train_config = config.train_config()
    assert (train_config.algorithm, train_config.net_arch, train_config.seed) == ("A2C", (8, 8), 4)
    assert config.cost_settings() == CostSettings(leverage=2.0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainedPolicyConfig(batch_size=100).train_config()


def test_the_datasets_named_reward_shapes_the_training(dataset):
    runtime, digest, _, _ = dataset
    record = load_dataset_record(runtime.db, digest)
    shaped = dataclasses.replace(
        record, dataset_hash=digest[:-8] + "5ba9ed00",
        config={**record.config, "reward": "turnover_penalised"},
    )  # fmt: skip
    record_dataset(runtime.db, shaped)
    try:
        outcome = run_training(runtime, shaped.dataset_hash, TINY)
        plain = run_training(runtime, digest, TINY)
        assert outcome.card["reward"] == "turnover_penalised" and plain.card["reward"] == (
            "equity_change_after_costs"
        )
        assert outcome.card["config"]["turnover_penalty"] == 0.02
        assert plain.card["config"]["turnover_penalty"] == 0.0
        assert outcome.weights_sha256 != plain.weights_sha256  # it learned under another reward
        clash = dataclasses.replace(TINY, drawdown_penalty=3.0)
        with pytest.raises(ValueError, match="reward 'turnover_penalised' sets the shaping"):
            run_training(runtime, shaped.dataset_hash, clash)
    finally:
        with runtime.db.connect() as conn:
            conn.execute("DELETE FROM models WHERE dataset_hash = %s", (shaped.dataset_hash,))
            conn.execute("DELETE FROM dataset_versions WHERE dataset_hash = %s",
                         (shaped.dataset_hash,))  # fmt: skip
            conn.commit()
