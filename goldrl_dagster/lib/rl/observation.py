"""THE observation builder, shared by the training env, the Nautilus strategy and the live engine.

One function builds every observation, so a policy always sees vectors laid out exactly as it
was trained on.
"""

from __future__ import annotations

import numpy as np

ACTION_TO_POSITION: tuple[int, int, int] = (-1, 0, 1)
"""Discrete action index -> target position (short, flat, long)."""

_POSITIONS = frozenset(ACTION_TO_POSITION)


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


def build_observation(feature_row: np.ndarray, position: int) -> np.ndarray:
    """Build the policy's input: the features of one bar followed by the current position.

    Args:
        feature_row: One row of the feature matrix (1-D, finite, in the feature set's order).
        position: Current position in {-1, 0, 1}.

    Returns:
        A float32 vector of length ``observation_size(len(feature_row))``.

    Raises:
        ValueError: If the row is not 1-D, is empty, holds NaN/inf (e.g. a warm-up row) or
            overflows float32, or the position is not -1, 0 or 1.
    """
    if isinstance(position, bool) or not isinstance(position, int | np.integer):
        raise ValueError(f"position must be an int in {{-1, 0, 1}}, got {position!r}")
    if int(position) not in _POSITIONS:
        raise ValueError(f"position must be -1, 0 or 1, got {position}")
    row = np.asarray(feature_row)
    if row.ndim != 1 or row.shape[0] == 0:
        raise ValueError(f"feature_row must be a non-empty 1-D array, got shape {row.shape}")
    if not np.issubdtype(row.dtype, np.number):
        raise ValueError(f"feature_row must be numeric, got dtype {row.dtype}")
    if not np.all(np.isfinite(row)):
        bad = np.flatnonzero(~np.isfinite(row)).tolist()
        raise ValueError(
            f"feature_row holds NaN/inf at indices {bad}; warm-up rows cannot be observed"
        )
    obs = np.empty(row.shape[0] + 1, dtype=np.float32)
    with np.errstate(over="ignore"):
        obs[:-1] = row
    obs[-1] = position
    if not np.all(np.isfinite(obs)):
        raise ValueError("feature_row holds values too large for float32")
    return obs
