"""One training run over a registered dataset version: load, train, store, register.

Shared by the ``trained_policy`` asset and ``goldrl train``, so both train the same way and
record the same card and registry row; they differ only in how progress is shown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from goldrl_dagster.lib.datasets.build import FUNDING_RATE
from goldrl_dagster.lib.datasets.contract_rules import REFUSE, resolve_contract_rules
from goldrl_dagster.lib.features.spec import FeatureSetSpec, feature_set_by_fingerprint
from goldrl_dagster.lib.rl.bar_constraints import BarConstraints, bar_constraints
from goldrl_dagster.lib.rl.costs import CostModel, relative_ranges
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.rl.rewards import DEFAULT_REWARD, reward_shaping
from goldrl_dagster.lib.rl.train import TrainConfig, train_policy
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.artifacts import StoredArtifact
from goldrl_dagster.lib.storage.registry import DatasetRecord, load_dataset_record, record_model


@dataclass(frozen=True)
class CostSettings:
    """Run settings of the cost model; fees, precision and minimums come from the instrument.

    Attributes:
        slippage_bps: Fixed slippage in basis points.
        slippage_range_fraction: Share of each bar's relative range added as slippage.
        leverage: Sizing leverage (``None``: 1), at most the contract's maximum.
        charge_funding: Charge funding at the dataset's funding bars.
    """

    slippage_bps: float = 1.0
    slippage_range_fraction: float = 0.0
    leverage: float | None = None
    charge_funding: bool = True


@dataclass(frozen=True)
class TrainingData:
    """The training part of a dataset version as arrays for the env.

    ``constraints`` are the segment ends and carried bars of a ``segments`` /
    ``carry_forward`` dataset (``None`` for a dataset without those columns).
    """

    record: DatasetRecord
    spec: FeatureSetSpec
    features: np.ndarray
    closes: np.ndarray
    bar_ranges: np.ndarray
    funding_rates: np.ndarray | None
    constraints: BarConstraints | None = None

    @property
    def rows(self) -> int:
        """Training bars."""
        return int(self.closes.shape[0])


@dataclass(frozen=True)
class TrainingOutcome:
    """What a run produced and where it is recorded."""

    model_id: str
    dataset_hash: str
    artifact: StoredArtifact
    card: dict[str, Any]
    cost_model: CostModel
    train_rows: int
    seconds: float

    @property
    def weights_sha256(self) -> str:
        """The card's hash of the policy tensors."""
        return str(self.card["weights_sha256"])

    @property
    def steps_per_second(self) -> float:
        """Environment steps per wall second, training and bundling included."""
        return float(self.card["timesteps_done"]) / max(self.seconds, 1e-9)


def model_id_for(algorithm: str, dataset_hash: str, weights_sha256: str) -> str:
    """A model's id: the algorithm plus a digest of what it learned from and what it learned."""
    digest = hashlib.sha256(f"{dataset_hash}:{weights_sha256}".encode()).hexdigest()
    return f"{algorithm.lower()}-{digest[:12]}"


def load_training_data(runtime: Runtime, dataset_hash: str) -> TrainingData:
    """Read a dataset version (checksum-verified) and cut its training part into arrays.

    Rows before the dataset's ``split_index`` are used; the held-out tail is left to the
    evaluation. A ``funding_rate`` column, when the dataset has one, is charged by the env.

    Raises:
        LookupError: If the dataset is unknown.
        ValueError: If its feature set is unknown or columns are missing.
    """
    record = load_dataset_record(runtime.db, dataset_hash)
    try:
        spec = feature_set_by_fingerprint(record.feature_fingerprint)
    except ValueError as exc:
        raise ValueError(
            f"dataset uses feature set {record.feature_fingerprint[:12]}, which this code does "
            "not compute; rebuild the dataset"
        ) from exc
    table = pl.read_parquet(io.BytesIO(runtime.artifacts.get_bytes(record.artifact)))
    missing = sorted({"high", "low", "close", *spec.feature_names} - set(table.columns))
    if missing:
        raise ValueError(f"dataset {dataset_hash[:12]} lacks columns {missing}")
    train = table.head(int(record.lineage["split_index"]))
    closes = train["close"].cast(pl.Float64).to_numpy()
    funding = (
        train[FUNDING_RATE].cast(pl.Float64).fill_null(0.0).to_numpy()
        if FUNDING_RATE in train.columns
        else None
    )
    return TrainingData(
        record=record,
        spec=spec,
        features=train.select(spec.feature_names).to_numpy().astype(np.float64),
        closes=closes,
        bar_ranges=relative_ranges(
            train["high"].cast(pl.Float64).to_numpy(),
            train["low"].cast(pl.Float64).to_numpy(),
            closes,
        ),
        funding_rates=funding,
        constraints=bar_constraints(train),
    )


def _with_reward(config: TrainConfig, reward: str) -> TrainConfig:
    """The training config under the dataset's named reward (its shaping penalties).

    Raises:
        ValueError: If the reward is unknown, or the config sets other penalties than it.
    """
    shaping = reward_shaping(reward)
    asked = (config.turnover_penalty, config.drawdown_penalty)
    if asked == (0.0, 0.0):
        return dataclasses.replace(
            config,
            turnover_penalty=shaping.turnover_penalty,
            drawdown_penalty=shaping.drawdown_penalty,
        )
    if asked != (shaping.turnover_penalty, shaping.drawdown_penalty) and reward != DEFAULT_REWARD:
        raise ValueError(
            f"the dataset's reward {reward!r} sets the shaping penalties; the training config "
            f"asks for turnover {asked[0]} / drawdown {asked[1]} as well"
        )
    return config


def run_training(
    runtime: Runtime,
    dataset_hash: str,
    config: TrainConfig,
    costs: CostSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrainingOutcome:
    """Train on a dataset version's training rows, store the bundle and register the model.

    The cost model comes from the instrument's contract metadata valid at the dataset's start
    plus ``costs``. A dataset starting before the contract's listing uses the rules its
    ``rules_before_listing`` names (declared or the earliest known version); the card then
    carries them under ``contract_rules``, marked assumed. A ``segments`` / ``carry_forward``
    dataset trains flat across its holes and never trades a carried bar (card:
    ``bar_constraints``). Idempotent: the same dataset, config
    and seed give the same weights, so the same model id and registry row.

    Args:
        runtime: Database and artifact store.
        dataset_hash: The dataset version.
        config: Algorithm, hyper-parameters and seed.
        costs: Slippage, leverage and funding settings.
        progress: Called as ``progress(done_steps, total_timesteps)`` during training.

    Returns:
        The model id, artifact, card and timings.

    Raises:
        LookupError: If the dataset or the instrument's metadata is unknown.
        ValueError: If the dataset, config or cost settings are invalid.
    """
    costs = costs or CostSettings()
    started = time.monotonic()
    data = load_training_data(runtime, dataset_hash)
    config = _with_reward(config, str(data.record.config.get("reward", DEFAULT_REWARD)))
    symbol = data.record.instruments[0]
    rules = resolve_contract_rules(
        runtime.db,
        symbol,
        data.record.window_start,
        str(data.record.config.get("rules_before_listing", REFUSE)),
    )
    instrument = rules.spec
    cost_model = CostModel.from_instrument(
        instrument,
        slippage_bps=costs.slippage_bps,
        slippage_range_fraction=costs.slippage_range_fraction,
        leverage=costs.leverage,
        charge_funding=costs.charge_funding,
    )
    card = {
        "dataset_hash": dataset_hash,
        "feature_fingerprint": data.spec.fingerprint,
        "feature_set": {"name": data.spec.name, "version": data.spec.version},
        "feature_names": list(data.spec.feature_names),
        "instrument": symbol,
        "instrument_rules_sha256": instrument.content_sha256(),
        "interval": data.record.interval,
        "train_rows": data.rows,
        "funding_charged": data.funding_rates is not None and cost_model.charge_funding,
        "reward": str(data.record.config.get("reward", DEFAULT_REWARD)),
    }
    if rules.assumed:
        card["contract_rules"] = rules.record()
    if "gap_policy" in data.record.config:
        card["gap_policy"] = str(data.record.config["gap_policy"])
    if data.constraints is not None:
        card["bar_constraints"] = {
            **data.constraints.summary(),
            "segment_end": "closed flat at its close",
            "carried_bar": "action ignored, position held",
        }
    with tempfile.TemporaryDirectory() as tmp:
        bundle = train_policy(
            data.features, data.closes, cost_model, config, card, Path(tmp) / "policy.zip",
            progress, bar_ranges=data.bar_ranges, funding_rates=data.funding_rates,
            constraints=data.constraints,
        )  # fmt: skip
        loaded = load_policy(bundle)  # verifies the bundle before it is stored
        artifact = runtime.artifacts.put_file(bundle)
    model_id = model_id_for(config.algorithm, dataset_hash, str(loaded.card["weights_sha256"]))
    record_model(
        runtime.db,
        model_id=model_id,
        artifact=artifact,
        dataset_hash=dataset_hash,
        feature_fingerprint=data.spec.fingerprint,
        algorithm=config.algorithm,
        seed=config.seed,
        card=loaded.card,
        cost_model_fingerprint=cost_model.fingerprint,
    )
    return TrainingOutcome(
        model_id=model_id,
        dataset_hash=dataset_hash,
        artifact=artifact,
        card=loaded.card,
        cost_model=cost_model,
        train_rows=data.rows,
        seconds=time.monotonic() - started,
    )
