"""Train a PPO policy on the trading env and write it as one self-describing bundle file.

A bundle is a zip holding ``model.zip`` (SB3), ``vecnormalize.pkl`` (the observation
normaliser, needed at inference) and ``card.json`` (config, versions, fingerprints and
``weights_sha256``). SB3's own zip embeds timestamps, so two runs never give byte-identical
files; ``weights_sha256`` over the policy tensors is the reproducibility check instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.env import GoldTradingEnv
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, observation_size

BUNDLE_FORMAT = "goldrl-policy-bundle/1"
MODEL_MEMBER = "model.zip"
NORMALIZER_MEMBER = "vecnormalize.pkl"
CARD_MEMBER = "card.json"
SUPPORTED_ALGORITHMS = ("PPO",)

# Keys train_policy writes into the card; a caller's card must not use them.
RESERVED_CARD_KEYS = frozenset(
    {
        "format",
        "algorithm",
        "config",
        "versions",
        "cost_model",
        "cost_model_fingerprint",
        "n_features",
        "observation_size",
        "action_to_position",
        "weights_sha256",
        "normalizer_sha256",
        "timesteps_done",
        "n_bars",
    }
)

# A fixed zip timestamp keeps the bundle's own layer free of wall-clock noise.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        algorithm: RL algorithm; only ``PPO`` is supported.
        total_timesteps: Environment steps to train for (summed over all envs).
        seed: Seed of every random generator involved.
        n_envs: Parallel (in-process) environments.
        n_steps: Steps per env per rollout.
        batch_size: PPO minibatch size; must divide ``n_steps * n_envs``.
        learning_rate: Adam learning rate.
        episode_length: Steps per training episode (random start).
        net_arch: Hidden layer sizes of the policy and value networks.
    """

    algorithm: str = "PPO"
    total_timesteps: int = 4096
    seed: int = 0
    n_envs: int = 2
    n_steps: int = 256
    batch_size: int = 128
    learning_rate: float = 3e-4
    episode_length: int = 512
    net_arch: tuple[int, ...] = (64, 64)

    def __post_init__(self) -> None:
        """Validate the configuration.

        Raises:
            ValueError: If the algorithm is unsupported or a value is out of range.
        """
        if self.algorithm not in SUPPORTED_ALGORITHMS:
            raise ValueError(
                f"algorithm {self.algorithm!r} is not supported; use one of {SUPPORTED_ALGORITHMS}"
            )
        for name in ("total_timesteps", "n_envs", "n_steps", "batch_size", "episode_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.batch_size < 2 or (self.n_steps * self.n_envs) % self.batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be >= 2 and divide n_steps * n_envs "
                f"({self.n_steps * self.n_envs})"
            )
        if not (0 < self.learning_rate < 1):
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not self.net_arch or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.net_arch
        ):
            raise ValueError(
                f"net_arch must be a non-empty tuple of positive ints: {self.net_arch}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data."""
        data = asdict(self)
        data["net_arch"] = list(self.net_arch)
        return data


@dataclass(frozen=True)
class TrainedPolicy:
    """A freshly trained model with its normaliser, before it is written out.

    Attributes:
        model: The trained SB3 PPO model.
        normalizer: The ``VecNormalize`` wrapper used in training (switched to inference mode).
        config: The training configuration.
        cost_model: The costs the env charged.
        n_features: Features per observation (without the position).
        n_bars: Bars in the training data.
    """

    model: PPO
    normalizer: VecNormalize
    config: TrainConfig
    cost_model: CostModel
    n_features: int
    n_bars: int

    @property
    def weights_sha256(self) -> str:
        """sha256 over the policy's tensors (see ``policy_weights_sha256``)."""
        return policy_weights_sha256(self.model.policy.state_dict())


def policy_weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Hash a policy's tensors in a canonical order (sorted names; name, dtype, shape, bytes).

    Args:
        state_dict: ``model.policy.state_dict()``.

    Returns:
        sha256 hex digest.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(json.dumps(list(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def normalizer_sha256(normalizer: VecNormalize) -> str:
    """Hash the observation statistics a normaliser applies (mean, var, count, clip, epsilon).

    Args:
        normalizer: A ``VecNormalize`` with array observations.

    Returns:
        sha256 hex digest.
    """
    rms = normalizer.obs_rms
    digest = hashlib.sha256()
    for part in (rms.mean, rms.var, np.float64(rms.count)):
        digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
    digest.update(json.dumps([float(normalizer.clip_obs), float(normalizer.epsilon)]).encode())
    return digest.hexdigest()


class _ProgressCallback(BaseCallback):
    """Reports ``(done_steps, total)`` after every rollout (not every step: it may log)."""

    def __init__(self, progress: Callable[[int, int], None], total: int) -> None:
        super().__init__()
        self._progress = progress
        self._total = total

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self._progress(self.num_timesteps, self._total)


def _validate_data(features: np.ndarray, closes: np.ndarray, config: TrainConfig) -> None:
    feats = np.asarray(features)
    if feats.ndim != 2:
        raise ValueError(f"features must be 2-D (bars, features), got shape {feats.shape}")
    if feats.shape[0] - 1 < config.episode_length:
        raise ValueError(
            f"episode_length {config.episode_length} needs at least {config.episode_length + 1} "
            f"bars; got {feats.shape[0]}"
        )
    if np.asarray(closes).shape != (feats.shape[0],):
        raise ValueError(
            f"closes must have one value per feature row: {np.asarray(closes).shape} "
            f"vs {feats.shape}"
        )


def fit_policy(
    features: np.ndarray,
    closes: np.ndarray,
    cost_model: CostModel,
    config: TrainConfig,
    progress: Callable[[int, int], None] | None = None,
) -> TrainedPolicy:
    """Train PPO on ``GoldTradingEnv`` with normalised observations, deterministically.

    Torch runs on one CPU thread during training (restored afterwards): multi-threaded kernels
    reorder float sums and would break run-to-run reproducibility.

    Args:
        features: Finite feature matrix ``(n, k)`` (warm-up rows removed).
        closes: Close prices ``(n,)`` aligned with the feature rows.
        cost_model: Costs charged by the env.
        config: Hyper-parameters and seed.
        progress: Called as ``progress(done_steps, total_timesteps)`` after each rollout and
            once at the end.

    Returns:
        The trained model and its normaliser.

    Raises:
        ValueError: If the data do not fit the env or the config.
    """
    _validate_data(features, closes, config)
    feats = np.asarray(features, dtype=np.float64)
    prices = np.asarray(closes, dtype=np.float64)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_random_seed(config.seed)

        def make_env() -> GoldTradingEnv:
            return GoldTradingEnv(feats, prices, cost_model, episode_length=config.episode_length)

        venv = DummyVecEnv([make_env] * config.n_envs)
        normalizer = VecNormalize(venv, norm_obs=True, norm_reward=False)
        model = PPO(
            "MlpPolicy",
            normalizer,
            learning_rate=config.learning_rate,
            n_steps=config.n_steps,
            batch_size=config.batch_size,
            seed=config.seed,
            policy_kwargs={"net_arch": list(config.net_arch)},
            device="cpu",
            verbose=0,
        )
        callback = None if progress is None else _ProgressCallback(progress, config.total_timesteps)
        model.learn(total_timesteps=config.total_timesteps, callback=callback)
        if progress is not None:
            progress(int(model.num_timesteps), config.total_timesteps)
    finally:
        torch.set_num_threads(previous_threads)
    normalizer.training = False
    return TrainedPolicy(
        model=model,
        normalizer=normalizer,
        config=config,
        cost_model=cost_model,
        n_features=int(feats.shape[1]),
        n_bars=int(feats.shape[0]),
    )


def _check_card(card: dict[str, Any]) -> None:
    if not isinstance(card, dict):
        raise ValueError(f"card must be a dict, got {type(card).__name__}")
    clash = sorted(RESERVED_CARD_KEYS & set(card))
    if clash:
        raise ValueError(f"card keys {clash} are reserved for train_policy")
    try:
        json.dumps(card, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"card is not JSON-serialisable: {exc}") from exc


def build_card(trained: TrainedPolicy, card: dict[str, Any]) -> dict[str, Any]:
    """The model card: the caller's entries plus everything needed to reproduce and audit.

    Args:
        trained: The trained policy.
        card: Caller's entries (e.g. dataset hash, feature-set fingerprint); JSON-serialisable
            and free of ``RESERVED_CARD_KEYS``.

    Returns:
        A new dict; the caller's dict is not modified.

    Raises:
        ValueError: If the card uses a reserved key or is not JSON-serialisable.
    """
    _check_card(card)
    full = {
        **card,
        "format": BUNDLE_FORMAT,
        "algorithm": trained.config.algorithm,
        "config": trained.config.to_dict(),
        "versions": {
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gymnasium.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "cost_model": asdict(trained.cost_model),
        "cost_model_fingerprint": trained.cost_model.fingerprint,
        "n_features": trained.n_features,
        "observation_size": observation_size(trained.n_features),
        "action_to_position": list(ACTION_TO_POSITION),
        "weights_sha256": trained.weights_sha256,
        "normalizer_sha256": normalizer_sha256(trained.normalizer),
        "timesteps_done": int(trained.model.num_timesteps),
        "n_bars": trained.n_bars,
    }
    return full


def write_bundle(trained: TrainedPolicy, card: dict[str, Any], out_path: Path) -> Path:
    """Write the bundle zip atomically (temporary file renamed into place).

    Args:
        trained: The trained policy.
        card: Caller's card entries (see ``build_card``).
        out_path: Destination file; parent folders are created.

    Returns:
        ``out_path``.
    """
    full_card = build_card(trained, card)
    model_buffer = io.BytesIO()
    trained.model.save(model_buffer)
    # VecNormalize drops its venv when pickled, so only the statistics and settings are stored.
    normalizer_bytes = pickle.dumps(trained.normalizer, protocol=pickle.HIGHEST_PROTOCOL)
    members = (
        (CARD_MEMBER, json.dumps(full_card, sort_keys=True, indent=2).encode()),
        (MODEL_MEMBER, model_buffer.getvalue()),
        (NORMALIZER_MEMBER, normalizer_bytes),
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as bundle:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(info, data)
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out_path


def train_policy(
    features: np.ndarray,
    closes: np.ndarray,
    cost_model: CostModel,
    config: TrainConfig,
    card: dict[str, Any],
    out_path: Path,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Train a policy and write its bundle (``model.zip``, ``vecnormalize.pkl``, ``card.json``).

    Same inputs and seed give the same ``weights_sha256`` in the card.

    Args:
        features: Finite feature matrix ``(n, k)`` (warm-up rows removed).
        closes: Close prices ``(n,)`` aligned with the feature rows.
        cost_model: Costs charged by the env.
        config: Hyper-parameters and seed.
        card: Caller's card entries, e.g. dataset hash and feature-set fingerprint.
        out_path: Bundle file to write.
        progress: Called as ``progress(done_steps, total_timesteps)`` during training.

    Returns:
        ``out_path``.

    Raises:
        ValueError: If the data, config or card are invalid.
    """
    _check_card(card)  # fail before spending the training time
    trained = fit_policy(features, closes, cost_model, config, progress)
    return write_bundle(trained, card, out_path)
