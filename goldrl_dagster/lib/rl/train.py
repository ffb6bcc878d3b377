"""Train an SB3 policy (PPO, A2C or DQN) on the trading env and write one self-describing bundle.

A bundle is a zip holding ``model.zip`` (SB3), ``vecnormalize.pkl`` (the observation
normaliser, needed at inference), ``card.json`` (config, versions, fingerprints and
``weights_sha256``) and the periodic checkpoints taken during training under
``checkpoints/<timesteps>/`` (``model.zip`` + ``vecnormalize.pkl`` each, listed in the card's
``checkpoints``), so an operator can fall back to an earlier point of a run from the one
checksummed artifact. SB3's own zip embeds timestamps, so two runs never give byte-identical
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import stable_baselines3
import torch
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from goldrl_dagster.lib.rl.bar_constraints import BarConstraints
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.env import GoldTradingEnv
from goldrl_dagster.lib.rl.observation import ACTION_TO_POSITION, observation_size
from goldrl_dagster.lib.rl.train_config import SUPPORTED_ALGORITHMS, TrainConfig

BUNDLE_FORMAT = "goldrl-policy-bundle/1"
MODEL_MEMBER = "model.zip"
NORMALIZER_MEMBER = "vecnormalize.pkl"
CARD_MEMBER = "card.json"
CHECKPOINT_PREFIX = "checkpoints/"
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "A2C": A2C, "DQN": DQN}
assert tuple(ALGORITHMS) == SUPPORTED_ALGORITHMS

# Keys train_policy writes into the card; a caller's card must not use them.
RESERVED_CARD_KEYS = frozenset(
    {
        "format",
        "algorithm",
        "action_space",
        "seed",
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
        "checkpoints",
    }
)

# A fixed zip timestamp keeps the bundle's own layer free of wall-clock noise.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Checkpoint:
    """A snapshot taken during training: the model and normaliser at ``timesteps``."""

    timesteps: int
    model_zip: bytes
    normalizer_pickle: bytes
    weights_sha256: str


@dataclass(frozen=True)
class TrainedPolicy:
    """A freshly trained model with its normaliser, before it is written out.

    Attributes:
        model: The trained SB3 model.
        normalizer: The ``VecNormalize`` wrapper used in training (switched to inference mode).
        config: The training configuration.
        cost_model: The costs the env charged.
        n_features: Features per observation (without the position).
        n_bars: Bars in the training data.
        checkpoints: Snapshots taken every ``config.checkpoint_every`` timesteps.
    """

    model: BaseAlgorithm
    normalizer: VecNormalize
    config: TrainConfig
    cost_model: CostModel
    n_features: int
    n_bars: int
    checkpoints: tuple[Checkpoint, ...] = ()

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


def _model_bytes(model: BaseAlgorithm) -> bytes:
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


class _ProgressCallback(BaseCallback):
    """Reports progress about every 1% of training and keeps periodic checkpoints."""

    def __init__(
        self,
        progress: Callable[[int, int], None] | None,
        total: int,
        checkpoint_every: int,
        normalizer: VecNormalize,
    ) -> None:
        super().__init__()
        self._progress = progress
        self._total = total
        self._report_step = max(1, total // 100)
        self._next_report = 0
        self._every = checkpoint_every
        self._next_checkpoint = checkpoint_every
        self._normalizer = normalizer
        self.checkpoints: list[Checkpoint] = []

    def _on_step(self) -> bool:
        done = self.num_timesteps
        if self._every and done >= self._next_checkpoint:
            # VecNormalize drops its venv when pickled: only statistics and settings are kept.
            self.checkpoints.append(
                Checkpoint(
                    timesteps=done,
                    model_zip=_model_bytes(self.model),
                    normalizer_pickle=pickle.dumps(self._normalizer, pickle.HIGHEST_PROTOCOL),
                    weights_sha256=policy_weights_sha256(self.model.policy.state_dict()),
                )
            )
            while self._next_checkpoint <= done:
                self._next_checkpoint += self._every
        if self._progress is not None and done >= self._next_report:
            self._progress(done, self._total)
            while self._next_report <= done:
                self._next_report += self._report_step
        return True


def _validate_data(
    features: np.ndarray,
    closes: np.ndarray,
    config: TrainConfig,
) -> None:
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


def _make_model(config: TrainConfig, venv: VecNormalize) -> BaseAlgorithm:
    common: dict[str, Any] = {
        "learning_rate": config.learning_rate,
        "gamma": config.gamma,
        "seed": config.seed,
        "policy_kwargs": {"net_arch": list(config.net_arch)},
        "device": "cpu",
        "verbose": 0,
    }
    if config.algorithm == "PPO":
        return PPO(
            "MlpPolicy", venv, n_steps=config.n_steps, batch_size=config.batch_size,
            n_epochs=config.n_epochs, gae_lambda=config.gae_lambda, ent_coef=config.ent_coef,
            clip_range=config.clip_range, **common,
        )  # fmt: skip
    if config.algorithm == "A2C":
        return A2C(
            "MlpPolicy", venv, n_steps=config.n_steps, gae_lambda=config.gae_lambda,
            ent_coef=config.ent_coef, **common,
        )  # fmt: skip
    return DQN(
        "MlpPolicy", venv, buffer_size=config.buffer_size, batch_size=config.batch_size,
        learning_starts=config.learning_starts,
        exploration_fraction=config.exploration_fraction, **common,
    )  # fmt: skip


def fit_policy(
    features: np.ndarray,
    closes: np.ndarray,
    cost_model: CostModel,
    config: TrainConfig,
    progress: Callable[[int, int], None] | None = None,
    *,
    bar_ranges: np.ndarray | None = None,
    funding_rates: np.ndarray | None = None,
    constraints: BarConstraints | None = None,
) -> TrainedPolicy:
    """Train on ``GoldTradingEnv`` with normalised observations, deterministically.

    Torch runs on one CPU thread during training (restored afterwards): multi-threaded kernels
    reorder float sums and would break run-to-run reproducibility, and on 2 cores the small
    networks gain nothing from more threads.

    Args:
        features: Finite feature matrix ``(n, k)`` (warm-up rows removed).
        closes: Close prices ``(n,)`` aligned with the feature rows.
        cost_model: Costs charged by the env.
        config: Algorithm, hyper-parameters, env sizing and seed.
        progress: Called as ``progress(done_steps, total_timesteps)`` about every 1% of
            training and once at the end.
        bar_ranges: Per-bar ``(high - low) / close`` for volatility slippage (``None``: 0).
        funding_rates: Per-bar funding rate of events settling in the bar (``None``: none).
        constraints: Segment ends and carried bars (see ``GoldTradingEnv``); ``None``: none.

    Returns:
        The trained model, its normaliser and checkpoints.

    Raises:
        ValueError: If the data do not fit the env or the config.
    """
    _validate_data(features, closes, config)
    feats = np.asarray(features, dtype=np.float64)
    prices = np.asarray(closes, dtype=np.float64)
    # One env validates the data (failing fast) and builds the observation table once; the
    # training envs are spawned from it and share its read-only arrays.
    env_kwargs = {
        **config.env_kwargs(),
        "bar_ranges": bar_ranges,
        "funding_rates": funding_rates,
    }
    if constraints is not None:
        env_kwargs["constraints"] = constraints
    template = GoldTradingEnv(feats, prices, cost_model, **env_kwargs)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        set_random_seed(config.seed)

        def make_env() -> GoldTradingEnv:
            return template.spawn()

        venv = DummyVecEnv([make_env] * config.n_envs)
        normalizer = VecNormalize(venv, norm_obs=True, norm_reward=False, gamma=config.gamma)
        model = _make_model(config, normalizer)
        callback = _ProgressCallback(
            progress, config.total_timesteps, config.checkpoint_every, normalizer
        )
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
        checkpoints=tuple(callback.checkpoints),
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


def checkpoint_members(timesteps: int) -> tuple[str, str]:
    """Bundle member names of the checkpoint taken at ``timesteps`` (model, normaliser)."""
    folder = f"{CHECKPOINT_PREFIX}{timesteps:012d}/"
    return folder + MODEL_MEMBER, folder + NORMALIZER_MEMBER


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
    return {
        **card,
        "format": BUNDLE_FORMAT,
        "algorithm": trained.config.algorithm,
        "action_space": "continuous" if trained.config.continuous else "discrete",
        "seed": trained.config.seed,
        "config": trained.config.to_dict(),
        "versions": {
            "stable_baselines3": stable_baselines3.__version__,
            "torch": torch.__version__,
            "gymnasium": gymnasium.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "cost_model": trained.cost_model.to_dict(),
        "cost_model_fingerprint": trained.cost_model.fingerprint,
        "n_features": trained.n_features,
        "observation_size": observation_size(trained.n_features),
        "action_to_position": list(ACTION_TO_POSITION),
        "weights_sha256": trained.weights_sha256,
        "normalizer_sha256": normalizer_sha256(trained.normalizer),
        "timesteps_done": int(trained.model.num_timesteps),
        "n_bars": trained.n_bars,
        "checkpoints": [
            {
                "timesteps": c.timesteps,
                "model": checkpoint_members(c.timesteps)[0],
                "normalizer": checkpoint_members(c.timesteps)[1],
                "weights_sha256": c.weights_sha256,
            }
            for c in trained.checkpoints
        ],
    }


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
    # VecNormalize drops its venv when pickled, so only the statistics and settings are stored.
    normalizer_bytes = pickle.dumps(trained.normalizer, protocol=pickle.HIGHEST_PROTOCOL)
    members: list[tuple[str, bytes]] = [
        (CARD_MEMBER, json.dumps(full_card, sort_keys=True, indent=2).encode()),
        (MODEL_MEMBER, _model_bytes(trained.model)),
        (NORMALIZER_MEMBER, normalizer_bytes),
    ]
    for checkpoint in trained.checkpoints:
        model_name, normalizer_name = checkpoint_members(checkpoint.timesteps)
        members.append((model_name, checkpoint.model_zip))
        members.append((normalizer_name, checkpoint.normalizer_pickle))
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
    *,
    bar_ranges: np.ndarray | None = None,
    funding_rates: np.ndarray | None = None,
    constraints: BarConstraints | None = None,
) -> Path:
    """Train a policy and write its bundle (model, normaliser, card, checkpoints).

    Same inputs and seed give the same ``weights_sha256`` in the card.

    Args:
        features: Finite feature matrix ``(n, k)`` (warm-up rows removed).
        closes: Close prices ``(n,)`` aligned with the feature rows.
        cost_model: Costs charged by the env.
        config: Algorithm, hyper-parameters, env sizing and seed.
        card: Caller's card entries, e.g. dataset hash and feature-set fingerprint.
        out_path: Bundle file to write.
        progress: Called as ``progress(done_steps, total_timesteps)`` during training.
        bar_ranges: Per-bar ``(high - low) / close`` for volatility slippage.
        funding_rates: Per-bar funding rates (events settling in the bar).
        constraints: Segment ends and carried bars (see ``GoldTradingEnv``).

    Returns:
        ``out_path``.

    Raises:
        ValueError: If the data, config or card are invalid.
    """
    _check_card(card)  # fail before spending the training time
    trained = fit_policy(
        features, closes, cost_model, config, progress,
        bar_ranges=bar_ranges, funding_rates=funding_rates, constraints=constraints,
    )  # fmt: skip
    return write_bundle(trained, card, out_path)
