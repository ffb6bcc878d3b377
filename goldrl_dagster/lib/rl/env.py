"""A Gymnasium environment that trades one instrument bar by bar on precomputed features."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.observation import (
    ACTION_TO_POSITION,
    build_observation,
    observation_size,
)


class GoldTradingEnv(gym.Env[np.ndarray, np.int64]):
    """Trade one instrument on the closes of bars, holding -1, 0 or +1 unit of notional.

    At step ``t`` the agent sees ``build_observation(features[t], position)`` (the bar ``t`` has
    closed), picks a target position, pays ``cost_model.cost_fraction(|change|)`` and earns
    ``target * (closes[t+1] / closes[t] - 1)`` over the next bar. Episodes start flat. The
    market does not end when the data does, so running out of bars or reaching
    ``episode_length`` steps is a truncation, never a termination (PPO then bootstraps).

    Args:
        features: Finite feature matrix of shape ``(n, k)``, warm-up rows already removed;
            row ``t`` must describe the bar whose close is ``closes[t]``.
        closes: Positive close prices of shape ``(n,)``.
        cost_model: Costs charged on position changes.
        episode_length: Steps per episode with a random start drawn from ``self.np_random``;
            ``None`` runs one episode over all the data from the first bar.

    Raises:
        ValueError: If shapes disagree, values are not finite, closes are not positive, there
            are fewer than two bars or ``episode_length`` does not fit the data.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        features: np.ndarray,
        closes: np.ndarray,
        cost_model: CostModel,
        *,
        episode_length: int | None = None,
    ) -> None:
        super().__init__()
        feats = np.array(features, dtype=np.float64, copy=True)
        prices = np.array(closes, dtype=np.float64, copy=True)
        if feats.ndim != 2 or feats.shape[1] == 0:
            raise ValueError(f"features must be a 2-D (n, k>0) array, got shape {feats.shape}")
        if prices.ndim != 1 or prices.shape[0] != feats.shape[0]:
            raise ValueError(
                f"closes must be 1-D with one value per feature row: closes {prices.shape}, "
                f"features {feats.shape}"
            )
        if feats.shape[0] < 2:
            raise ValueError("need at least two bars to earn a return")
        if not np.all(np.isfinite(feats)):
            first = int(np.flatnonzero(~np.all(np.isfinite(feats), axis=1))[0])
            raise ValueError(
                f"features hold NaN/inf (first at row {first}); drop warm-up rows first"
            )
        if not np.all(np.isfinite(prices)) or np.any(prices <= 0):
            raise ValueError("closes must be finite and positive")
        n = feats.shape[0]
        if episode_length is not None and (
            isinstance(episode_length, bool)
            or not isinstance(episode_length, int | np.integer)
            or not 1 <= episode_length <= n - 1
        ):
            raise ValueError(
                f"episode_length must be an int in [1, {n - 1}] for {n} bars "
                f"(or None), got {episode_length!r}"
            )
        feats.flags.writeable = False
        self._features = feats
        self._returns = prices[1:] / prices[:-1] - 1.0
        self._cost_model = cost_model
        self._episode_length = None if episode_length is None else int(episode_length)
        self._n = n
        # build_observation guarantees finite float32 values, so the float32 range bounds them.
        limit = float(np.finfo(np.float32).max)
        self.observation_space = spaces.Box(
            low=-limit, high=limit, shape=(observation_size(feats.shape[1]),), dtype=np.float32
        )
        self.action_space = spaces.Discrete(len(ACTION_TO_POSITION))
        self._t = 0
        self._end = 0
        self._position = 0
        self._started = False

    @property
    def position(self) -> int:
        """Current position in {-1, 0, 1}."""
        return self._position

    def _info(self) -> dict[str, Any]:
        return {"t": self._t, "position": self._position}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a flat episode, at a random bar when ``episode_length`` is set.

        Args:
            seed: Seeds ``self.np_random`` (only on the first reset or when given).
            options: Unused.

        Returns:
            The first observation and an info dict with ``t`` and ``position``.
        """
        super().reset(seed=seed)
        if self._episode_length is None:
            start, end = 0, self._n - 1
        else:
            start = int(self.np_random.integers(0, self._n - 1 - self._episode_length + 1))
            end = start + self._episode_length
        self._t, self._end, self._position, self._started = start, end, 0, True
        return build_observation(self._features[start], 0), self._info()

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move to the target position of ``action`` and hold it over the next bar.

        Args:
            action: Index into ``ACTION_TO_POSITION``.

        Returns:
            ``(observation, reward, terminated, truncated, info)``; ``info`` adds the bar
            return and the cost paid.

        Raises:
            ValueError: If the action is not 0, 1 or 2.
            RuntimeError: If called before ``reset`` or after the episode ended.
        """
        if not self._started:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        index = int(action)
        if index != action or not 0 <= index < len(ACTION_TO_POSITION):
            raise ValueError(f"action must be 0, 1 or 2, got {action!r}")
        target = ACTION_TO_POSITION[index]
        cost = self._cost_model.cost_fraction(abs(target - self._position))
        bar_return = float(self._returns[self._t])
        reward = target * bar_return - cost
        self._position = target
        self._t += 1
        truncated = self._t >= self._end
        if truncated:
            self._started = False
        obs = build_observation(self._features[self._t], self._position)
        info = {**self._info(), "bar_return": bar_return, "cost": cost}
        return obs, float(reward), False, truncated, info
