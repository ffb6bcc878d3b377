"""Trained policies: Stable-Baselines3 (PPO by default) on a dataset version's training rows."""

import json
from typing import TYPE_CHECKING, Literal

import dagster as dg

from goldrl_dagster.defs.datasets.partitions import dataset_partitions
from goldrl_dagster.defs.keys import DATASET_VERSION, MODELS_GROUP, TRAINED_POLICY
from goldrl_dagster.defs.lineage import dataset_hash_for
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.pools import TRAINING_POOL
from goldrl_dagster.lib.rl.train_config import TrainConfig

if TYPE_CHECKING:
    # torch and Stable-Baselines3: imported by the run that trains, not on load.
    from goldrl_dagster.lib.rl.training_run import CostSettings

_DEFAULTS = TrainConfig()


class TrainedPolicyConfig(dg.Config):
    """Training run settings: algorithm, hyper-parameters, env sizing and costs.

    The defaults are ``TrainConfig``'s (tuned for 2 CPU cores, see docs/benchmarks.md).
    """

    algorithm: Literal["PPO", "A2C", "DQN"] = "PPO"
    total_timesteps: int = _DEFAULTS.total_timesteps
    seed: int = _DEFAULTS.seed
    n_envs: int = _DEFAULTS.n_envs
    n_steps: int = _DEFAULTS.n_steps
    batch_size: int = _DEFAULTS.batch_size
    n_epochs: int = _DEFAULTS.n_epochs
    learning_rate: float = _DEFAULTS.learning_rate
    gamma: float = _DEFAULTS.gamma
    gae_lambda: float = _DEFAULTS.gae_lambda
    ent_coef: float = _DEFAULTS.ent_coef
    clip_range: float = _DEFAULTS.clip_range
    buffer_size: int = _DEFAULTS.buffer_size
    learning_starts: int = _DEFAULTS.learning_starts
    exploration_fraction: float = _DEFAULTS.exploration_fraction
    episode_length: int = _DEFAULTS.episode_length
    # Config is a pydantic model, which copies a mutable default for every instance.
    net_arch: list[int] = list(_DEFAULTS.net_arch)  # noqa: RUF012
    continuous: bool = _DEFAULTS.continuous
    initial_equity: float = _DEFAULTS.initial_equity
    order_quantity: float | None = _DEFAULTS.order_quantity
    equity_fraction: float = _DEFAULTS.equity_fraction
    reward_scale: float = _DEFAULTS.reward_scale
    checkpoint_every: int = _DEFAULTS.checkpoint_every
    # Reward shaping normally comes from the dataset request's named reward.
    turnover_penalty: float = _DEFAULTS.turnover_penalty
    drawdown_penalty: float = _DEFAULTS.drawdown_penalty
    slippage_bps: float = 1.0
    slippage_range_fraction: float = 0.0
    leverage: float | None = None
    charge_funding: bool = True

    def train_config(self) -> TrainConfig:
        """The lib-level training configuration (validated there)."""
        values = self.model_dump()
        for key in ("slippage_bps", "slippage_range_fraction", "leverage", "charge_funding"):
            values.pop(key)
        return TrainConfig.from_dict(values)

    def cost_settings(self) -> "CostSettings":
        """Slippage, leverage and funding settings of the cost model."""
        from goldrl_dagster.lib.rl.training_run import CostSettings

        return CostSettings(
            slippage_bps=self.slippage_bps,
            slippage_range_fraction=self.slippage_range_fraction,
            leverage=self.leverage,
            charge_funding=self.charge_funding,
        )


@dg.asset(
    key=TRAINED_POLICY,
    group_name=MODELS_GROUP,
    deps=[DATASET_VERSION],
    partitions_def=dataset_partitions,
    kinds={"pytorch", "postgres"},
    pool=TRAINING_POOL,
)
def trained_policy(
    context: dg.AssetExecutionContext, config: TrainedPolicyConfig, storage: GoldrlStorage
) -> dg.MaterializeResult:
    """A seeded policy trained on the dataset's training rows, with its normaliser and card.

    The bundle (model, observation normaliser, checkpoints, model card with dataset hash,
    feature-set and cost-model fingerprints, seed and library versions) is stored in the
    artifact store and registered under a model id derived from the dataset and the learned
    weights. Progress is logged about every 10% of the timesteps.
    """
    try:
        train_config = config.train_config()
    except ValueError as exc:
        raise dg.Failure(f"invalid training config: {exc}") from exc
    dataset_hash = dataset_hash_for(context)
    next_log = [0]

    def progress(done: int, total: int) -> None:
        if done >= next_log[0] or done >= total:
            next_log[0] = done + max(1, total // 10)
            context.log.info("training %s: %d / %d steps", train_config.algorithm, done, total)

    from goldrl_dagster.lib.rl.training_run import run_training

    try:
        outcome = run_training(
            storage.runtime(), dataset_hash, train_config, config.cost_settings(), progress
        )
    except (LookupError, ValueError) as exc:
        raise dg.Failure(f"cannot train on dataset {dataset_hash[:12]}: {exc}") from exc
    context.log.info(
        "trained %s in %.1fs (%.0f steps/s, weights %s)", outcome.model_id, outcome.seconds,
        outcome.steps_per_second, outcome.weights_sha256[:12],
    )  # fmt: skip
    card = outcome.card
    rules = card.get("contract_rules")
    return dg.MaterializeResult(
        metadata={
            # Rules before the listing are assumed (declared or the earliest known): say so.
            "contract_rules": f"{rules['basis']} (assumed)" if rules else "exchange",
            "model_id": outcome.model_id,
            "algorithm": train_config.algorithm,
            "dataset_hash": dataset_hash,
            "weights_sha256": outcome.weights_sha256,
            "artifact_sha256": outcome.artifact.sha256,
            "cost_model_fingerprint": outcome.cost_model.fingerprint,
            "train_rows": outcome.train_rows,
            "total_timesteps": train_config.total_timesteps,
            "timesteps_done": int(card["timesteps_done"]),
            "seed": train_config.seed,
            "training_seconds": round(outcome.seconds, 2),
            "steps_per_second": round(outcome.steps_per_second, 1),
            "checkpoints": len(card["checkpoints"]),
            "card": dg.MetadataValue.json(json.loads(json.dumps(card, default=str))),
        }
    )
