"""Named reward definitions a dataset request can ask for (the ``reward`` field of its key).

Each is the env's equity-change reward plus an optional shaping (see ``GoldTradingEnv``): a
learning cycle trains candidates under several of them and the promotion gate judges them all,
each counted as a trial.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RewardShaping:
    """Penalties added to the equity-change reward.

    Attributes:
        turnover_penalty: Per unit of target-position change.
        drawdown_penalty: Times the growth of the drawdown from the equity peak.
    """

    turnover_penalty: float = 0.0
    drawdown_penalty: float = 0.0


DEFAULT_REWARD = "equity_change_after_costs"

REWARDS: dict[str, RewardShaping] = {
    # The change of equity after fees, slippage and funding (the default).
    "equity_change_after_costs": RewardShaping(),
    # The same, minus 0.02 per unit of position change: fewer, longer trades.
    "turnover_penalised": RewardShaping(turnover_penalty=0.02),
    # The same, with every deepening of the drawdown counted twice: shallower holes.
    "drawdown_penalised": RewardShaping(drawdown_penalty=1.0),
}


def reward_shaping(name: str) -> RewardShaping:
    """The shaping of a named reward.

    Raises:
        ValueError: If the name is not a known reward (listing the known ones).
    """
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; known: {sorted(REWARDS)}")
    return REWARDS[name]
