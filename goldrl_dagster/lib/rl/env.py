"""A Gymnasium environment that trades one perpetual bar by bar, in quote-currency accounting.

Everything is precomputed at construction (observations without the position, slippage per bar,
funding per bar); ``step`` is plain float arithmetic on Python lists, with no I/O, pandas or
per-step validation of the data.

Timeline of one step at bar ``t`` (bar ``t`` has closed, the agent saw its features):

1. The action sets a target position; the order for the difference fills at
   ``cost_model.fill_price(side, closes[t], bar_ranges[t])`` and pays ``cost_model.fee``.
2. The position is held over bar ``t + 1``: it is marked at ``closes[t + 1]``.
3. If ``funding_rates[t + 1]`` is non-zero (funding events settle inside bar ``t + 1``), the
   position pays ``cost_model.funding_payment(quantity, closes[t + 1], rate)`` — the close of
   that bar stands in for the mark price at the funding time.
4. ``reward = reward_scale × (equity[t + 1] - equity[t]) / initial_equity``: the change of
   equity after fees, slippage and funding, as a fraction of the starting equity.
5. Optional shaping (both 0 by default, which leaves the reward exactly as above): minus
   ``turnover_penalty × |change of target position|`` (units of a full position) and minus
   ``drawdown_penalty × reward_scale ×`` the growth of the drawdown from the episode's equity
   peak (fraction of the starting equity), so a policy that churns or digs deeper holes than it
   needs to is taught otherwise.

Bar constraints (``constraints``, from a dataset's ``segment`` / ``carried_forward`` columns,
see ``bar_constraints``): at a segment's last bar the target is forced flat, so the position is
closed at that bar's close with fee and slippage and the step across the hole holds nothing;
on a carried (filled) bar the action is ignored and the position held (no order). Without
constraints every step is exactly as described above.
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from goldrl_dagster.lib.rl.bar_constraints import BarConstraints
from goldrl_dagster.lib.rl.costs import CostModel, per_bar_values
from goldrl_dagster.lib.rl.observation import (
    ACTION_TO_POSITION,
    POSITION_INDEX,
    build_observations,
    observation_size,
)

_FLATTEN, _HOLD = 1, 2
"""Per-bar constraint flags: close flat at this bar's close / ignore the action and hold."""


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


def _positive_number(name: str, value: object, *, upper: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not 0 < number <= upper:
        raise ValueError(f"{name} must be in (0, {upper}], got {value!r}")
    return number


class GoldTradingEnv(gym.Env[np.ndarray, Any]):
    """Trade one instrument on bar closes: short/flat/long (or a continuous target position).

    Sizing: a full position is ``order_quantity`` base units when given (rounded to the
    contract's step and checked against its minimums at construction), otherwise
    ``equity_fraction × leverage × equity / close`` base units at the time of each trade. The
    observation's position element is the target last applied, as a fraction of a full
    position (-1, 0 or 1 for the discrete env). An order is sized only when the target
    changes (holding a target never trades, so equity sizing does not re-size every bar).
    Orders below the contract minimums (possible with equity sizing or small continuous moves)
    are not sent: the position and its observed target stay.

    Episodes start flat with ``initial_equity`` of cash. Running out of bars or reaching
    ``episode_length`` steps is a truncation (the market did not end); losing all equity is a
    termination.

    Args:
        features: Finite feature matrix ``(n, k)``, warm-up rows removed; row ``t`` describes
            the bar whose close is ``closes[t]``.
        closes: Positive close prices ``(n,)``.
        cost_model: Fees, slippage, funding, rounding and minimums.
        bar_ranges: Relative ranges ``(high - low) / close`` per bar for volatility slippage
            (see ``costs.relative_ranges``); ``None`` means 0.
        funding_rates: Funding rate of the events settling in each bar, 0.0 where none;
            ``None`` charges no funding.
        initial_equity: Starting cash in the quote currency.
        order_quantity: Fixed size of a full position in base units; ``None`` sizes by equity.
        equity_fraction: Fraction of equity (times leverage) in a full position, when sizing
            by equity.
        continuous: Use a ``Box([-1], [1])`` target-position action instead of
            ``Discrete(3)``; targets are rounded to the quantity step.
        episode_length: Steps per episode with a random start drawn from ``self.np_random``;
            ``None`` runs one episode over all the data from the first bar.
        reward_scale: Multiplies the reward (equity change / initial equity).
        step_info: Return the accounting ``info`` dict from ``step``; training turns it off
            because SB3's vectorised envs deep-copy every info dict on every step.
        constraints: Segment ends (closed flat at their close) and carried bars (the action
            is ignored, the position held); ``None``: every bar is tradable.

    Raises:
        ValueError: If shapes disagree, values are not finite, closes are not positive, there
            are fewer than two bars, ``episode_length`` does not fit the data, a parameter is
            out of range, or the fixed order quantity breaks the contract minimums or needs
            more margin than ``initial_equity × leverage`` at the highest close.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        features: np.ndarray,
        closes: np.ndarray,
        cost_model: CostModel,
        *,
        bar_ranges: np.ndarray | None = None,
        funding_rates: np.ndarray | None = None,
        initial_equity: float = 10_000.0,
        order_quantity: float | None = None,
        equity_fraction: float = 1.0,
        continuous: bool = False,
        episode_length: int | None = None,
        reward_scale: float = 1.0,
        step_info: bool = True,
        turnover_penalty: float = 0.0,
        drawdown_penalty: float = 0.0,
        constraints: BarConstraints | None = None,
    ) -> None:
        super().__init__()
        feats = np.asarray(features)
        if feats.ndim != 2 or feats.shape[1] == 0:
            raise ValueError(f"features must be a 2-D (n, k>0) array, got shape {feats.shape}")
        prices = np.array(closes, dtype=np.float64, copy=True)
        if prices.ndim != 1 or prices.shape[0] != feats.shape[0]:
            raise ValueError(
                f"closes must be 1-D with one value per feature row: closes {prices.shape}, "
                f"features {feats.shape}"
            )
        n = feats.shape[0]
        if n < 2:
            raise ValueError("need at least two bars to earn a return")
        if not np.all(np.isfinite(prices)) or np.any(prices <= 0):
            raise ValueError("closes must be finite and positive")
        if not isinstance(cost_model, CostModel):
            raise ValueError(f"cost_model must be a CostModel, got {type(cost_model).__name__}")
        if episode_length is not None and (
            isinstance(episode_length, bool)
            or not isinstance(episode_length, int | np.integer)
            or not 1 <= episode_length <= n - 1
        ):
            raise ValueError(
                f"episode_length must be an int in [1, {n - 1}] for {n} bars "
                f"(or None), got {episode_length!r}"
            )
        if not isinstance(continuous, bool):
            raise ValueError(f"continuous must be a bool, got {continuous!r}")
        if not isinstance(step_info, bool):
            raise ValueError(f"step_info must be a bool, got {step_info!r}")
        self._step_info = step_info
        self._initial_equity = _positive_number("initial_equity", initial_equity)
        self._equity_fraction = _positive_number("equity_fraction", equity_fraction, upper=1.0)
        self._reward_scale = _positive_number("reward_scale", reward_scale)
        self._turnover_penalty = _non_negative("turnover_penalty", turnover_penalty)
        self._drawdown_penalty = _non_negative("drawdown_penalty", drawdown_penalty)
        self._peak = self._drawdown = 0.0
        if constraints is not None and not isinstance(constraints, BarConstraints):
            raise ValueError(
                f"constraints must be BarConstraints, got {type(constraints).__name__}"
            )
        if constraints is not None and len(constraints) != n:
            raise ValueError(
                f"constraints must have one flag per bar ({n}), got {len(constraints)}"
            )
        # One flag per bar (0 free, _FLATTEN, _HOLD; flatten wins); None keeps the
        # unconstrained step path to one attribute test.
        self._flags: list[int] | None = None
        if constraints is not None and constraints.any:
            flags = np.where(constraints.hold, _HOLD, 0)
            flags[constraints.flatten] = _FLATTEN
            self._flags = flags.tolist()
        slippage = cost_model.slippage_fractions(per_bar_values("bar_ranges", bar_ranges, n))
        funding = per_bar_values("funding_rates", funding_rates, n)
        if not cost_model.charge_funding:
            funding[:] = 0.0
        self._order_quantity: float | None = None
        if order_quantity is not None:
            quantity = cost_model.round_quantity(_positive_number("order_quantity", order_quantity))
            try:
                cost_model.check_order(quantity, float(prices.min()))
            except ValueError as exc:
                raise ValueError(f"order_quantity {order_quantity}: {exc}") from exc
            margin = self._initial_equity * cost_model.leverage
            if quantity * float(prices.max()) > margin:
                raise ValueError(
                    f"order_quantity {quantity} at the highest close {prices.max()} needs more "
                    f"than initial_equity × leverage = {margin}"
                )
            self._order_quantity = quantity

        # Observations are built once by THE builder; step only writes the position element.
        self._base_obs = build_observations(feats, np.zeros(n))
        self._base_obs.flags.writeable = False
        self._closes: list[float] = prices.tolist()
        self._slippage: list[float] = slippage.tolist()
        self._funding: list[float] = funding.tolist()
        self._cost_model = cost_model
        self._taker = cost_model.taker_fee_rate
        self._sizing = cost_model.leverage * self._equity_fraction
        self._continuous = continuous
        self._episode_length = None if episode_length is None else int(episode_length)
        self._n = n
        # THE builder guarantees finite float32 values, so the float32 range bounds them.
        limit = float(np.finfo(np.float32).max)
        self.observation_space = spaces.Box(
            low=-limit, high=limit, shape=(observation_size(feats.shape[1]),), dtype=np.float32
        )
        self.action_space: spaces.Space[Any] = (
            spaces.Box(low=-1.0, high=1.0, shape=(1,), dtype=np.float32)
            if continuous
            else spaces.Discrete(len(ACTION_TO_POSITION))
        )
        self._t = 0
        self._end = 0
        self._position = 0.0
        self._quantity = 0.0
        self._cash = self._initial_equity
        self._equity = self._initial_equity
        self._started = False

    def spawn(self) -> GoldTradingEnv:
        """A new, un-reset env over the same data and settings, sharing the read-only arrays.

        Vectorised training uses it so ``n_envs`` copies do not each hold the observation
        table; the new env has its own state and random generator (seeded on ``reset``).
        """
        twin = copy.copy(self)
        twin._np_random = None
        twin._np_random_seed = None
        # Spaces carry their own sampling generator; each env gets its own.
        twin.observation_space = copy.deepcopy(self.observation_space)
        twin.action_space = copy.deepcopy(self.action_space)
        twin._t = twin._end = 0
        twin._position = twin._quantity = 0.0
        twin._cash = twin._equity = self._initial_equity
        twin._started = False
        return twin

    @property
    def position(self) -> float:
        """The target last applied, as a fraction of a full position (-1, 0, 1 if discrete)."""
        return self._position

    @property
    def quantity(self) -> float:
        """Held position in base units (positive long)."""
        return self._quantity

    @property
    def equity(self) -> float:
        """Cash plus the position marked at the current bar's close."""
        return self._equity

    def _observation(self) -> np.ndarray:
        obs = self._base_obs[self._t].copy()
        obs[POSITION_INDEX] = self._position
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a flat episode, at a random bar when ``episode_length`` is set.

        Args:
            seed: Seeds ``self.np_random`` (only on the first reset or when given).
            options: Unused.

        Returns:
            The first observation and an info dict with ``t``, ``position`` and ``equity``.
        """
        super().reset(seed=seed)
        if self._episode_length is None:
            start, end = 0, self._n - 1
        else:
            start = int(self.np_random.integers(0, self._n - 1 - self._episode_length + 1))
            end = start + self._episode_length
        self._t, self._end, self._started = start, end, True
        self._position, self._quantity = 0.0, 0.0
        self._cash = self._equity = self._initial_equity
        self._peak, self._drawdown = self._initial_equity, 0.0
        return self._observation(), {"t": start, "position": 0.0, "equity": self._equity}

    def _target(self, action: Any) -> float:
        if self._continuous:
            value = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
            if not -1.0 <= value <= 1.0:  # also false for NaN
                raise ValueError(f"action must be a target position in [-1, 1], got {action!r}")
            return value
        index = int(action)
        if index != action or not 0 <= index <= 2:
            raise ValueError(f"action must be 0, 1 or 2, got {action!r}")
        return float(ACTION_TO_POSITION[index])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Trade to the action's target position and hold it over the next bar.

        Args:
            action: Index into ``ACTION_TO_POSITION`` (discrete) or a target position in
                ``[-1, 1]`` (continuous). Validated always; overridden at a segment's last
                bar (flat) and on a carried bar (the position held).

        Returns:
            ``(observation, reward, terminated, truncated, info)``; ``info`` holds ``t``,
            ``position``, ``quantity``, ``traded_quantity``, ``fill_price``, ``fee``,
            ``slippage`` (cost against the close), ``cost`` (fee + slippage), ``funding``
            (paid; negative if received), ``cash`` and ``equity`` (empty when ``step_info`` is
            off).

        Raises:
            ValueError: If the action is invalid.
            RuntimeError: If called before ``reset`` or after the episode ended.
        """
        if not self._started:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        target = self._target(action)
        t = self._t
        close = self._closes[t]
        costs = self._cost_model
        fee = slippage = fill = delta = 0.0
        before = self._position
        closing = False
        if self._flags is not None:
            flag = self._flags[t]
            if flag == _FLATTEN:  # the next bar lies beyond a hole: close here
                target, closing = 0.0, True
            elif flag == _HOLD:  # a carried bar has no market: hold
                target = self._position
        # Holding the same target never trades, so equity sizing does not re-size every bar.
        if target != self._position:
            if self._order_quantity is None:
                wanted = costs.round_quantity(target * self._sizing * self._equity / close)
            elif self._continuous:
                wanted = costs.round_quantity(target * self._order_quantity)
            else:
                wanted = target * self._order_quantity
            delta = wanted - self._quantity
        if delta != 0.0:
            size = abs(delta)
            if closing:
                sendable = True  # closing the whole position is always sent
            elif self._order_quantity is None or self._continuous:
                sendable = size >= costs.min_quantity and size * close >= costs.min_notional
            else:
                sendable = True  # checked once at construction
            if sendable:
                slip = self._slippage[t]
                fill = close * (1.0 + slip) if delta > 0 else close * (1.0 - slip)
                fee = size * fill * self._taker
                slippage = size * close * slip
                self._cash -= delta * fill + fee
                self._quantity = wanted
                self._position = target
            else:
                delta = 0.0
        t += 1
        self._t = t
        mark = self._closes[t]
        funding = self._quantity * mark * self._funding[t]
        self._cash -= funding
        previous = self._equity
        self._equity = equity = self._cash + self._quantity * mark
        reward = self._reward_scale * (equity - previous) / self._initial_equity
        if self._turnover_penalty:
            reward -= self._turnover_penalty * abs(self._position - before)
        if self._drawdown_penalty:
            self._peak = max(self._peak, equity)
            drawdown = (self._peak - equity) / self._initial_equity
            if drawdown > self._drawdown:
                reward -= self._drawdown_penalty * self._reward_scale * (drawdown - self._drawdown)
            self._drawdown = drawdown
        terminated = equity <= 0.0
        truncated = not terminated and t >= self._end
        if terminated or truncated:
            self._started = False
        if not self._step_info:
            return self._observation(), reward, terminated, truncated, {}
        info = {
            "t": t,
            "position": self._position,
            "quantity": self._quantity,
            "traded_quantity": delta,
            "fill_price": fill,
            "fee": fee,
            "slippage": slippage,
            "cost": fee + slippage,
            "funding": funding,
            "cash": self._cash,
            "equity": equity,
        }
        return self._observation(), reward, terminated, truncated, info
