"""THE observation builder, shared by the training env, the Nautilus strategy and the live engine.

One function builds every observation (``build_observations``; ``build_observation`` is its
one-row form), so a policy always sees vectors laid out exactly as it was trained on: the bar's
features in the feature set's order, then the current position as float32.
"""

from __future__ import annotations

import numpy as np

ACTION_TO_POSITION: tuple[int, int, int] = (-1, 0, 1)
"""Discrete action index -> target position (short, flat, long)."""

POSITION_INDEX = -1
"""Where the position sits in an observation (the last element)."""


def observation_size(n_features: int) -> int:
    """Length of an observation built from ``n_features`` features.

    Args:
        n_features: Number of features in the feature set.

    Returns:
        ``n_features + 1`` (the current position is appended).

    Raises:
        ValueError: If ``n_features`` is not a positive int.
    """
    if isinstance(n_features, bool) or not isinstance(n_features, int | np.integer):
        raise ValueError(f"n_features must be an int, got {n_features!r}")
    if n_features < 1:
        raise ValueError(f"n_features must be at least 1, got {n_features}")
    return int(n_features) + 1


def build_observations(features: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Build the policy's inputs for many bars: each bar's features, then its position.

    Args:
        features: Feature matrix ``(n, k)`` (finite, in the feature set's order).
        positions: Current position per bar ``(n,)``, each in ``[-1, 1]``: -1, 0, 1 for the
            discrete policies, the held fraction of a full position for continuous ones.

    Returns:
        A new float32 array of shape ``(n, k + 1)``.

    Raises:
        ValueError: If the features are not a non-empty numeric 2-D array, hold NaN/inf (e.g.
            warm-up rows) or overflow float32, or the positions are not numeric, do not match
            the rows, or are outside ``[-1, 1]``.
    """
    feats = np.asarray(features)
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise ValueError(f"features must be a non-empty 2-D (n, k) array, got shape {feats.shape}")
    if not np.issubdtype(feats.dtype, np.number) or np.issubdtype(feats.dtype, np.complexfloating):
        raise ValueError(f"features must be real numbers, got dtype {feats.dtype}")
    pos = np.asarray(positions)
    if pos.dtype == np.bool_ or not np.issubdtype(pos.dtype, np.number):
        raise ValueError(f"positions must be numbers, got dtype {pos.dtype}")
    if pos.shape != (feats.shape[0],):
        raise ValueError(f"positions must have shape ({feats.shape[0]},), got {pos.shape}")
    finite = np.isfinite(feats)
    if not finite.all():
        row = int(np.flatnonzero(~finite.all(axis=1))[0])
        columns = np.flatnonzero(~finite[row]).tolist()
        raise ValueError(
            f"features hold NaN/inf at row {row}, columns {columns}; "
            "warm-up rows cannot be observed"
        )
    if not np.all(np.isfinite(pos)) or np.any(np.abs(pos) > 1):
        bad = int(np.flatnonzero(~(np.abs(pos) <= 1))[0])
        raise ValueError(f"positions must be in [-1, 1]; row {bad} holds {pos[bad]}")
    obs = np.empty((feats.shape[0], feats.shape[1] + 1), dtype=np.float32)
    with np.errstate(over="ignore"):
        obs[:, :POSITION_INDEX] = feats
    obs[:, POSITION_INDEX] = pos
    if not np.isfinite(obs).all():
        raise ValueError("features hold values too large for float32")
    return obs


def build_observation(feature_row: np.ndarray, position: float) -> np.ndarray:
    """Build one bar's observation: ``build_observations(row[None], [position])[0]``.

    Args:
        feature_row: One row of the feature matrix (1-D, finite, in the feature set's order).
        position: Current position in ``[-1, 1]`` (-1, 0 or 1 for discrete policies).

    Returns:
        A float32 vector of length ``observation_size(len(feature_row))``.

    Raises:
        ValueError: If the row is not 1-D, is empty, holds NaN/inf (e.g. a warm-up row) or
            overflows float32, or the position is not a number in ``[-1, 1]``.
    """
    if isinstance(position, bool) or not isinstance(position, int | float | np.number):
        raise ValueError(f"position must be a number in [-1, 1], got {position!r}")
    row = np.asarray(feature_row)
    if row.ndim != 1 or row.shape[0] == 0:
        raise ValueError(f"feature_row must be a non-empty 1-D array, got shape {row.shape}")
    return build_observations(row[None, :], np.array([position]))[0]
