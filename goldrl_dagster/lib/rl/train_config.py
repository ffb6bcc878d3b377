"""Training hyper-parameters (:class:`TrainConfig`), importable without torch or SB3.

The Dagster code location reads the defaults when it loads; the training code itself
(``lib/rl/train.py``) imports torch and Stable-Baselines3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from goldrl_dagster.lib.rl.costs import check_number

# The algorithms train.py maps to Stable-Baselines3 classes.
SUPPORTED_ALGORITHMS = ("PPO", "A2C", "DQN")


def _positive_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Algorithm, hyper-parameters, env sizing and seed of one training run.

    The defaults suit a 2-core CPU (see ``docs/benchmarks.md``): few, large minibatches and
    few epochs keep the torch update from dwarfing the cheap env steps.

    Attributes:
        algorithm: ``PPO`` (default), ``A2C`` or ``DQN`` (discrete actions only).
        total_timesteps: Environment steps to train for (summed over all envs).
        seed: Seed of every random generator involved.
        n_envs: Parallel (in-process) environments.
        n_steps: Steps per env per rollout (PPO, A2C).
        batch_size: Minibatch size (PPO: must divide ``n_steps * n_envs``; DQN).
        n_epochs: Passes over each rollout (PPO).
        learning_rate: Adam (PPO, DQN) / RMSprop (A2C) learning rate.
        gamma: Discount factor.
        gae_lambda: GAE lambda (PPO, A2C).
        ent_coef: Entropy bonus (PPO, A2C).
        clip_range: PPO clip range.
        buffer_size: Replay buffer size (DQN).
        learning_starts: Steps before DQN starts learning.
        exploration_fraction: Share of training over which DQN's epsilon decays.
        episode_length: Steps per training episode (random start).
        net_arch: Hidden layer sizes of the networks.
        continuous: Train on the continuous (Box) target-position env instead of short/flat/long.
        initial_equity: Env starting cash (quote currency).
        order_quantity: Fixed full-position size in base units; ``None`` sizes by equity.
        equity_fraction: Share of equity (times leverage) in a full position.
        reward_scale: Multiplies the env reward (equity change / initial equity); the default
            100 makes it a percentage, large enough for the value function to learn quickly.
        checkpoint_every: Keep a checkpoint every this many timesteps (0: none).
        turnover_penalty: Reward shaping: subtracted per unit of target-position change.
        drawdown_penalty: Reward shaping: times the growth of the drawdown from the episode's
            equity peak (see ``GoldTradingEnv``).
    """

    algorithm: str = "PPO"
    total_timesteps: int = 4096
    seed: int = 0
    n_envs: int = 8
    n_steps: int = 256
    batch_size: int = 512
    n_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    ent_coef: float = 0.0
    clip_range: float = 0.2
    buffer_size: int = 50_000
    learning_starts: int = 1000
    exploration_fraction: float = 0.2
    episode_length: int = 512
    net_arch: tuple[int, ...] = (64, 64)
    continuous: bool = False
    initial_equity: float = 10_000.0
    order_quantity: float | None = None
    equity_fraction: float = 1.0
    reward_scale: float = 100.0
    checkpoint_every: int = 0
    turnover_penalty: float = 0.0
    drawdown_penalty: float = 0.0

    def __post_init__(self) -> None:
        """Validate the configuration.

        Raises:
            ValueError: Naming the setting that is unsupported or out of range.
        """
        if self.algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(
                f"algorithm {self.algorithm!r} is not supported; use one of {SUPPORTED_ALGORITHMS}"
            )
        if not isinstance(self.continuous, bool):
            raise ValueError(f"continuous must be a bool, got {self.continuous!r}")
        if self.algorithm == "DQN" and self.continuous:
            raise ValueError("DQN needs discrete actions; set continuous=False or use PPO/A2C")
        for name in (
            "total_timesteps", "n_envs", "n_steps", "batch_size", "n_epochs", "buffer_size",
            "episode_length",
        ):  # fmt: skip
            _positive_int(name, getattr(self, name))
        _positive_int("seed", self.seed, 0)
        _positive_int("learning_starts", self.learning_starts, 0)
        _positive_int("checkpoint_every", self.checkpoint_every, 0)
        if self.algorithm == "PPO" and (
            self.batch_size < 2 or (self.n_steps * self.n_envs) % self.batch_size
        ):
            raise ValueError(
                f"batch_size ({self.batch_size}) must be >= 2 and divide n_steps * n_envs "
                f"({self.n_steps * self.n_envs})"
            )
        check_number("learning_rate", self.learning_rate, 1e-8, 0.99)
        check_number("gamma", self.gamma, 0.0, 1.0)
        check_number("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_number("ent_coef", self.ent_coef, 0.0, 1.0)
        check_number("clip_range", self.clip_range, 1e-6, 1.0)
        check_number("exploration_fraction", self.exploration_fraction, 0.0, 1.0)
        check_number("equity_fraction", self.equity_fraction, 1e-9, 1.0)
        check_number("initial_equity", self.initial_equity, 1e-9, 1e15)
        check_number("reward_scale", self.reward_scale, 1e-9, 1e9)
        check_number("turnover_penalty", self.turnover_penalty, 0.0, 1e6)
        check_number("drawdown_penalty", self.drawdown_penalty, 0.0, 1e6)
        if self.order_quantity is not None:
            check_number("order_quantity", self.order_quantity, 1e-12, 1e12)
        if (
            not isinstance(self.net_arch, tuple)
            or not self.net_arch
            or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.net_arch)
        ):
            raise ValueError(
                f"net_arch must be a non-empty tuple of positive ints: {self.net_arch!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data."""
        data = asdict(self)
        data["net_arch"] = list(self.net_arch)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """The config from ``to_dict``'s data (e.g. a model card's ``config``), validated.

        Args:
            data: Settings by name; missing ones keep their defaults.

        Returns:
            The configuration.

        Raises:
            ValueError: Naming unknown settings, or a setting that is out of range.
        """
        unknown = sorted(set(data) - {field.name for field in fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig settings: {unknown}")
        values = dict(data)
        # JSON has no tuples: to_dict writes net_arch as a list.
        if isinstance(values.get("net_arch"), list):
            values["net_arch"] = tuple(values["net_arch"])
        return cls(**values)

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``GoldTradingEnv`` that come from this config."""
        return {
            "initial_equity": float(self.initial_equity),
            "order_quantity": self.order_quantity,
            "equity_fraction": float(self.equity_fraction),
            "continuous": self.continuous,
            "episode_length": self.episode_length,
            "reward_scale": float(self.reward_scale),
            "step_info": False,
            "turnover_penalty": float(self.turnover_penalty),
            "drawdown_penalty": float(self.drawdown_penalty),
        }
