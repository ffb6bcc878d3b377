"""Trained policies: Stable-Baselines3 PPO on the training part of a dataset version."""

import hashlib
import json
import tempfile
import time
from pathlib import Path

import dagster as dg

from goldrl_dagster.defs.datasets.loading import load_dataset
from goldrl_dagster.defs.datasets.partitions import dataset_partitions
from goldrl_dagster.defs.keys import DATASET_VERSION, MODELS_GROUP, TRAINED_POLICY
from goldrl_dagster.defs.lineage import dataset_hash_for
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.features.spec import DEFAULT_FEATURE_SET
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.rl.train import TrainConfig, train_policy
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.registry import record_model


class TrainedPolicyConfig(dg.Config):
    """Training run settings (PPO); the defaults train in well under a minute on 2 cores."""

    total_timesteps: int = 4096
    seed: int = 0
    n_envs: int = 2
    learning_rate: float = 3e-4
    slippage_bps: float = 1.0


def model_id_for(algorithm: str, dataset_hash: str, weights_sha256: str) -> str:
    """A model's id: the algorithm plus a digest of what it learned from and what it learned."""
    digest = hashlib.sha256(f"{dataset_hash}:{weights_sha256}".encode()).hexdigest()
    return f"{algorithm.lower()}-{digest[:12]}"


@dg.asset(
    key=TRAINED_POLICY,
    group_name=MODELS_GROUP,
    deps=[DATASET_VERSION],
    partitions_def=dataset_partitions,
    kinds={"pytorch", "postgres"},
)
def trained_policy(
    context: dg.AssetExecutionContext, config: TrainedPolicyConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """A seeded PPO policy trained on the dataset's training rows, with its normaliser and card.

    The bundle (model, observation normaliser, model card with dataset hash, feature-set and
    cost-model fingerprints, seed and library versions) is stored in the artifact store and
    registered under a model id derived from the dataset and the learned weights.
    """
    runtime = storage.runtime()
    dataset_hash = dataset_hash_for(context)
    dataset = load_dataset(runtime, dataset_hash)
    spec = DEFAULT_FEATURE_SET
    if dataset.record.feature_fingerprint != spec.fingerprint:
        raise dg.Failure(
            f"dataset {dataset_hash[:12]} uses feature set "
            f"{dataset.record.feature_fingerprint[:12]}"
            f", this code location computes {spec.fingerprint[:12]}; rebuild the dataset"
        )
    train = dataset.table.head(dataset.split_index)
    symbol = dataset.record.instruments[0]
    costs = CostModel.from_instrument(
        instrument_at(runtime.db, symbol, dataset.record.window_start),
        slippage_bps=config.slippage_bps,
    )
    train_config = TrainConfig(
        total_timesteps=config.total_timesteps,
        seed=config.seed,
        n_envs=config.n_envs,
        learning_rate=config.learning_rate,
    )
    card = {
        "dataset_hash": dataset_hash,
        "feature_fingerprint": spec.fingerprint,
        "feature_names": list(spec.feature_names),
        "instrument": symbol,
        "interval": dataset.record.interval,
        "train_rows": train.height,
    }
    last_logged = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last_logged[0] > 5 or done >= total:
            last_logged[0] = time.monotonic()
            context.log.info("training: %d / %d steps", done, total)

    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = train_policy(
            train.select(spec.feature_names).to_numpy(),
            train["close"].to_numpy(),
            costs,
            train_config,
            card,
            Path(tmp) / "policy.zip",
            progress=progress,
        )
        loaded = load_policy(bundle)
        artifact = runtime.artifacts.put_file(bundle)
    seconds = time.monotonic() - started
    weights = str(loaded.card["weights_sha256"])
    model_id = model_id_for(train_config.algorithm, dataset_hash, weights)
    record_model(
        runtime.db,
        model_id=model_id,
        artifact=artifact,
        dataset_hash=dataset_hash,
        feature_fingerprint=spec.fingerprint,
        algorithm=train_config.algorithm,
        seed=train_config.seed,
        card=loaded.card,
    )
    context.log.info("trained %s in %.1fs (weights %s)", model_id, seconds, weights[:12])
    return dg.MaterializeResult(
        metadata={
            "model_id": model_id,
            "dataset_hash": dataset_hash,
            "weights_sha256": weights,
            "artifact_sha256": artifact.sha256,
            "cost_model_fingerprint": costs.fingerprint,
            "train_rows": train.height,
            "total_timesteps": config.total_timesteps,
            "seed": config.seed,
            "training_seconds": round(seconds, 2),
            "card": dg.MetadataValue.json(json.loads(json.dumps(loaded.card, default=str))),
        }
    )
