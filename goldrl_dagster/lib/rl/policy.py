"""Load a policy bundle written by ``train_policy`` and turn observations into positions.

Bundles hold pickled objects (SB3 and the VecNormalize statistics): load only bundles from the
project's own artifact store, which verifies their checksum. Loading also re-hashes the policy
tensors against the card's ``weights_sha256``, so a bundle whose parts were mixed up is refused.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from goldrl_dagster.lib.rl.observation import (
    ACTION_TO_POSITION,
    build_observation,
    build_observations,
)
from goldrl_dagster.lib.rl.train import (
    ALGORITHMS,
    BUNDLE_FORMAT,
    CARD_MEMBER,
    MODEL_MEMBER,
    NORMALIZER_MEMBER,
    normalizer_sha256,
    policy_weights_sha256,
)

# Training-only schedules are replaced on load: inference never calls them, and unpickling
# their closures is what breaks across Python versions.
_INFERENCE_OBJECTS: dict[str, Any] = {
    "learning_rate": 0.0,
    "lr_schedule": lambda _: 0.0,
    "clip_range": lambda _: 0.0,
    "exploration_schedule": lambda _: 0.0,
}


class PolicyBundleError(ValueError):
    """Raised when a file is not a usable policy bundle."""


class LoadedPolicy:
    """A trained policy ready for inference: normalise, act deterministically, map to positions.

    Discrete policies (short/flat/long) answer ``act``, ``target_position`` and
    ``action_table``; continuous ones answer ``target_fraction``.

    Args:
        model: The SB3 model (PPO, A2C or DQN).
        normalizer: The training ``VecNormalize`` statistics (used with ``training=False``).
        card: The bundle's model card.

    Attributes:
        card: The model card (config, versions, fingerprints, ``weights_sha256``).
    """

    card: dict[str, Any]

    def __init__(
        self, model: BaseAlgorithm, normalizer: VecNormalize, card: dict[str, Any]
    ) -> None:
        self._model = model
        self._normalizer = normalizer
        self._normalizer.training = False
        self.card = card
        self.observation_size = int(card["observation_size"])
        self.continuous = card.get("action_space") == "continuous"
        self._model.policy.set_training_mode(False)  # evaluation mode, once (predict's doing)

    def _require(self, continuous: bool, what: str) -> None:
        if self.continuous != continuous:
            kind = "continuous" if self.continuous else "discrete"
            raise ValueError(f"{what} is not available for a {kind} policy")

    def _check_observation(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32)
        if obs.shape != (self.observation_size,):
            raise ValueError(
                f"observation must have shape ({self.observation_size},), got {obs.shape}"
            )
        if not np.all(np.isfinite(obs)):
            raise ValueError("observation holds NaN/inf")
        return obs

    def target_fraction(self, observation: np.ndarray) -> float:
        """A continuous policy's target position for a raw observation.

        Args:
            observation: A vector from ``build_observation`` (not normalised).

        Returns:
            The target as a fraction of a full position, in ``[-1, 1]``.

        Raises:
            ValueError: If the observation is invalid or the policy is discrete.
        """
        self._require(True, "target_fraction")
        obs = self._check_observation(observation)
        action, _ = self._model.predict(self._normalizer.normalize_obs(obs), deterministic=True)
        return float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))

    def act(self, observation: np.ndarray) -> int:
        """Choose the deterministic action index for a raw observation.

        Args:
            observation: A vector from ``build_observation`` (NOT normalised: the saved
                normaliser is applied here).

        Returns:
            An index into ``ACTION_TO_POSITION``.

        Raises:
            ValueError: If the observation has the wrong shape or holds NaN/inf, or the policy
                is continuous.
        """
        self._require(False, "act")
        obs = self._check_observation(observation)
        normalized = self._normalizer.normalize_obs(obs)
        # What SB3's ``predict`` does for one discrete observation, without its per-call
        # space checks and conversions (most of its ~1 ms on the live decision path); equal
        # to ``predict`` by test for every algorithm goldrl trains.
        with torch.no_grad():
            tensor = torch.as_tensor(normalized, device=self._model.device).reshape(1, -1)
            action = self._model.policy._predict(tensor, deterministic=True)
        return int(action.reshape(-1)[0])

    def action_table(self, features: np.ndarray, *, chunk_rows: int = 65_536) -> np.ndarray:
        """The deterministic action for every bar and every current position, in one pass.

        Equal to ``act(build_observation(features[i], ACTION_TO_POSITION[j]))`` for every bar
        ``i`` and position column ``j``, but computed with one batched normalisation and one
        torch forward pass per chunk, so a backtest never calls torch per bar.

        Args:
            features: Feature matrix ``(n, k)`` in the feature set's order (finite).
            chunk_rows: Bars per batched forward pass (bounds memory on long datasets).

        Returns:
            int8 array of shape ``(n, 3)``: column ``j`` holds the action index (into
            ``ACTION_TO_POSITION``) when the current position is ``ACTION_TO_POSITION[j]``.

        Raises:
            ValueError: If the features are invalid (see ``build_observations``), do not
                have the policy's feature count, or the policy is continuous.
        """
        self._require(False, "action_table")
        feats = np.asarray(features)
        expected = self.observation_size - 1
        if feats.ndim != 2 or feats.shape[1] != expected:
            raise ValueError(f"features must have shape (n, {expected}), got {feats.shape}")
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
        n = feats.shape[0]
        n_positions = len(ACTION_TO_POSITION)
        table = np.empty((n, n_positions), dtype=np.int8)
        for start in range(0, n, chunk_rows):
            chunk = feats[start : start + chunk_rows]
            rows = chunk.shape[0]
            # Position-major stacking: rows [j*rows, (j+1)*rows) hold position j.
            observations = build_observations(
                np.tile(chunk, (n_positions, 1)),
                np.repeat(np.asarray(ACTION_TO_POSITION, dtype=np.float32), rows),
            )
            normalized = self._normalizer.normalize_obs(observations)
            actions, _ = self._model.predict(normalized, deterministic=True)
            table[start : start + rows] = np.asarray(actions).reshape(n_positions, rows).T
        return table

    def target_position(self, feature_row: np.ndarray, position: int) -> int:
        """The position the policy wants after seeing one bar's features.

        Args:
            feature_row: The bar's features, in the feature set's order.
            position: Current position in {-1, 0, 1}.

        Returns:
            Target position in {-1, 0, 1}.

        Raises:
            ValueError: If the row or position is invalid (see ``build_observation``).
        """
        return ACTION_TO_POSITION[self.act(build_observation(feature_row, position))]


def _read_members(bundle_path: Path) -> dict[str, bytes]:
    if not bundle_path.is_file():
        raise PolicyBundleError(f"policy bundle {bundle_path} does not exist")
    try:
        with zipfile.ZipFile(bundle_path) as bundle:
            names = set(bundle.namelist())
            missing = sorted({CARD_MEMBER, MODEL_MEMBER, NORMALIZER_MEMBER} - names)
            if missing:
                raise PolicyBundleError(f"policy bundle {bundle_path} lacks {missing}")
            return {
                name: bundle.read(name) for name in (CARD_MEMBER, MODEL_MEMBER, NORMALIZER_MEMBER)
            }
    except zipfile.BadZipFile as exc:
        raise PolicyBundleError(f"{bundle_path} is not a policy bundle (not a zip)") from exc


def _parse_card(raw: bytes, bundle_path: Path) -> dict[str, Any]:
    try:
        card = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolicyBundleError(f"{bundle_path}: card.json is not valid JSON") from exc
    if not isinstance(card, dict):
        raise PolicyBundleError(f"{bundle_path}: card.json is not an object")
    if card.get("format") != BUNDLE_FORMAT:
        raise PolicyBundleError(
            f"{bundle_path}: bundle format {card.get('format')!r}, expected {BUNDLE_FORMAT!r}"
        )
    for key in ("weights_sha256", "observation_size", "action_to_position"):
        if key not in card:
            raise PolicyBundleError(f"{bundle_path}: card.json lacks {key!r}")
    if card["action_to_position"] != list(ACTION_TO_POSITION):
        raise PolicyBundleError(
            f"{bundle_path}: policy maps actions to {card['action_to_position']}, this code to "
            f"{list(ACTION_TO_POSITION)}"
        )
    if card.setdefault("algorithm", "PPO") not in ALGORITHMS:
        raise PolicyBundleError(
            f"{bundle_path}: algorithm {card['algorithm']!r} is not one of {list(ALGORITHMS)}"
        )
    return card


def load_policy(bundle_path: Path) -> LoadedPolicy:
    """Load a bundle written by ``train_policy``.

    Args:
        bundle_path: The bundle file.

    Returns:
        The policy, on CPU.

    Raises:
        PolicyBundleError: (a ``ValueError``) if the file is missing, not a zip, lacks a
            member, has an unreadable or incompatible card, its model or normaliser cannot be
            loaded, their shapes disagree with the card, or the weights or normaliser
            statistics do not hash to the card's ``weights_sha256`` / ``normalizer_sha256``.
    """
    bundle_path = Path(bundle_path)
    members = _read_members(bundle_path)
    card = _parse_card(members[CARD_MEMBER], bundle_path)
    try:
        model = ALGORITHMS[card["algorithm"]].load(
            io.BytesIO(members[MODEL_MEMBER]), device="cpu", custom_objects=_INFERENCE_OBJECTS
        )
    except Exception as exc:
        raise PolicyBundleError(f"{bundle_path}: model.zip cannot be loaded: {exc}") from exc
    try:
        normalizer = pickle.loads(members[NORMALIZER_MEMBER])
    except Exception as exc:
        raise PolicyBundleError(f"{bundle_path}: vecnormalize.pkl cannot be loaded: {exc}") from exc
    if not isinstance(normalizer, VecNormalize):
        raise PolicyBundleError(f"{bundle_path}: vecnormalize.pkl holds no VecNormalize")
    expected = (int(card["observation_size"]),)
    shapes = {
        "model": tuple(model.observation_space.shape or ()),
        "normalizer": tuple(np.shape(normalizer.obs_rms.mean)),
    }
    if any(shape != expected for shape in shapes.values()):
        raise PolicyBundleError(
            f"{bundle_path}: observation shapes {shapes} disagree with the card's {expected}"
        )
    actual = policy_weights_sha256(model.policy.state_dict())
    if actual != card["weights_sha256"]:
        raise PolicyBundleError(
            f"{bundle_path}: policy weights hash to {actual}, card says {card['weights_sha256']}"
        )
    if "normalizer_sha256" in card and normalizer_sha256(normalizer) != card["normalizer_sha256"]:
        raise PolicyBundleError(
            f"{bundle_path}: normaliser statistics do not match the card's normalizer_sha256"
        )
    return LoadedPolicy(model, normalizer, card)
