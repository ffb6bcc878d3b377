"""Known-good and known-mediocre policies on a market with a planted, persistent signal.

The market moves in regimes (4-12 bars of drift up, down or none, plus noise). The dataset
carries two features observed at each bar's close: ``signal_strong`` is the next bar's regime
(a perfect forecaster) and ``signal_weak`` is the same with a share of the regimes mislabelled
(a real but worse edge); ``signal_noise`` is drawn independently of the market (no edge). A
policy is a real SB3 PPO bundle whose weights are set by hand to
follow one of them: long on +1, short on -1, flat on 0. So the gate's verdicts can be checked
against edges known in advance, through the real evaluation path (Nautilus, cost model,
registry).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import torch
from backtest_fixtures import XAUT

from goldrl_dagster.lib.datasets.build import DatasetConfig, dataset_hash, parquet_bytes
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.train import TrainConfig, fit_policy, write_bundle
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.market_store import sync_instruments
from goldrl_dagster.lib.storage.registry import (
    DatasetRecord,
    record_dataset,
    record_model,
    register_feature_set,
)

FEATURES = ("signal_strong", "signal_weak", "signal_noise")
FINGERPRINT = "planted-signal-v1"
SYMBOL = XAUT.symbol
START = datetime(2025, 2, 1, tzinfo=UTC)


def planted_market(
    days: int = 24, *, bar_minutes: int = 15, seed: int = 11, weak_error: float = 0.35
) -> pl.DataFrame:
    """Regime candles with the two signal features (see the module docstring).

    Returns:
        ``open_time``, OHLCV, ``funding_rate`` (0) and the two features, one row per bar.
    """
    rng = np.random.default_rng(seed)
    n = days * 24 * 60 // bar_minutes
    regimes = np.empty(n, dtype=np.int64)
    labels = np.empty(n, dtype=np.int64)
    i = 0
    while i < n:
        length = int(rng.integers(4, 13))
        kind = int(rng.integers(-1, 2))
        noisy = int(rng.integers(-1, 2)) if rng.random() < weak_error else kind
        regimes[i : i + length] = kind
        labels[i : i + length] = noisy
        i += length
    returns = regimes * 0.002 + rng.normal(0.0, 0.001, n)
    close = np.round(2000.0 * np.exp(np.cumsum(returns)), 2)
    open_ = np.r_[2000.0, close[:-1]]
    high = np.round(np.maximum(open_, close) * 1.0004, 2)
    low = np.round(np.minimum(open_, close) * 0.9996, 2)
    # Observed at bar t's close: the regime of bar t+1 (the last bar has no next one).
    strong = np.r_[regimes[1:], 0].astype(float)
    weak = np.r_[labels[1:], 0].astype(float)
    noise = np.repeat(rng.integers(-1, 2, n // 8 + 1), 8)[:n].astype(float)
    times = [START + timedelta(minutes=bar_minutes * k) for k in range(n)]
    return pl.DataFrame(
        {
            "open_time": pl.Series(times, dtype=pl.Datetime("us", "UTC")),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": np.full(n, 1_000_000.0),
            "funding_rate": np.zeros(n),
            "signal_strong": strong,
            "signal_weak": weak,
            "signal_noise": noise,
        }
    )


def register_planted_dataset(runtime: Runtime, table: pl.DataFrame, interval: str) -> str:
    """Register the market's contract (valid from before the data), feature set and dataset."""
    sync_instruments(runtime.db, [XAUT], "test", now=START - timedelta(days=30))
    register_feature_set(runtime.db, FINGERPRINT, "planted", 1, list(FEATURES), "{}")
    start, end = table["open_time"][0], table["open_time"][-1]
    config = DatasetConfig(SYMBOL, interval, start, end, FINGERPRINT)
    artifact = runtime.artifacts.put_bytes(parquet_bytes(table), ".parquet")
    digest = dataset_hash(artifact.sha256, config)
    split = table.height // 3
    record_dataset(
        runtime.db,
        DatasetRecord(
            digest, [SYMBOL], interval, start, end, FINGERPRINT, table.height, artifact,
            json.loads(config.canonical_json()),
            {"split_index": split, "candle_sources": ["simulator"]},
        ),
    )  # fmt: skip
    return digest


def planted_policy_bundle(table: pl.DataFrame, follow: str, out_path: Path, seed: int = 0) -> Path:
    """A PPO bundle whose weights follow one signal column: +1 long, -1 short, 0 flat."""
    features = table.select(FEATURES).to_numpy()
    config = TrainConfig(
        total_timesteps=64, n_envs=1, n_steps=64, batch_size=64, n_epochs=1, net_arch=(2,),
        episode_length=32, seed=seed,
    )  # fmt: skip
    trained = fit_policy(
        features, table["close"].to_numpy(), CostModel.from_instrument(XAUT), config
    )
    column = FEATURES.index(follow)
    policy = trained.model.policy
    with torch.no_grad():
        hidden = policy.mlp_extractor.policy_net[0]
        hidden.weight.zero_()
        hidden.bias.zero_()
        hidden.weight[0, column] = 3.0  # unit 0 rises with the signal
        hidden.weight[1, column] = -3.0  # unit 1 rises against it
        head = policy.action_net
        head.weight.zero_()
        head.weight[2, 0] = 5.0  # long with the signal
        head.weight[0, 1] = 5.0  # short against it
        head.bias.copy_(torch.tensor([0.0, 1.0, 0.0]))  # flat unless the signal speaks
    normalizer = trained.normalizer
    normalizer.obs_rms.mean = np.zeros_like(normalizer.obs_rms.mean)
    normalizer.obs_rms.var = np.ones_like(normalizer.obs_rms.var)
    card = {"feature_names": list(FEATURES), "follows": follow}
    return write_bundle(trained, card, out_path)


def register_planted_model(
    runtime: Runtime, table: pl.DataFrame, digest: str, model_id: str, follow: str, workdir: Path
) -> str:
    """Write, store and register a hand-set policy following ``follow`` on the dataset."""
    bundle = planted_policy_bundle(table, follow, workdir / f"{model_id}.zip")
    artifact = runtime.artifacts.put_file(bundle)
    record_model(
        runtime.db, model_id=model_id, artifact=artifact, dataset_hash=digest,
        feature_fingerprint=FINGERPRINT, algorithm="PPO", seed=0, card={"follows": follow},
    )  # fmt: skip
    return model_id
