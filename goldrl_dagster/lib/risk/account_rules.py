"""Rules on the account itself: loss limits and input staleness.

Shared by the order check and the state machine, so a halt and an order block name the same
rule with the same numbers.
"""

from __future__ import annotations

from decimal import Decimal

from goldrl_dagster.lib.risk.inputs import AccountSnapshot
from goldrl_dagster.lib.risk.limits import RiskLimits
from goldrl_dagster.lib.risk.verdict import RiskBlock, Rule, format_number


def limit_decimal(value: float | int) -> Decimal:
    """A limit (float or int from :class:`RiskLimits`) as the Decimal it was written as."""
    return Decimal(repr(value))


def stale_block(
    rule: Rule, what: str, observed_ms: int, now_ms: int, max_age_s: float
) -> RiskBlock | None:
    """Block when an input is older than its limit.

    Args:
        rule: The rule to report (e.g. :attr:`Rule.STALE_MARK_PRICE`).
        what: What the input is, for the message (e.g. ``mark price``).
        observed_ms: When the input was observed (epoch ms).
        now_ms: The current time (epoch ms).
        max_age_s: The oldest allowed age in seconds.

    Returns:
        A block whose value is the age in seconds, or None when the age is within the limit
        (an input from the future is not stale).
    """
    age_s = Decimal(now_ms - observed_ms) / 1000
    limit = limit_decimal(max_age_s)
    if age_s <= limit:
        return None
    return RiskBlock(
        rule,
        float(age_s),
        float(max_age_s),
        f"{what} is {format_number(age_s)} s old, older than the limit of "
        f"{format_number(limit)} s: hold",
    )


def pnl_blocks(account: AccountSnapshot, limits: RiskLimits) -> tuple[RiskBlock, ...]:
    """The loss limits an account breaches.

    * ``daily_loss``: ``day_start_equity - equity`` above ``daily_loss_limit``.
    * ``max_drawdown``: ``(peak_equity - equity) / peak_equity`` above
      ``max_drawdown_fraction``.

    Args:
        account: The account snapshot.
        limits: The limits.

    Returns:
        The breaches, daily loss first (empty when within both limits).
    """
    blocks = []
    loss = account.day_start_equity - account.equity
    loss_limit = limit_decimal(limits.daily_loss_limit)
    if loss > loss_limit:
        blocks.append(
            RiskBlock(
                Rule.DAILY_LOSS,
                float(loss),
                limits.daily_loss_limit,
                f"loss since the UTC day's start {format_number(loss)} exceeds the daily loss "
                f"limit {format_number(loss_limit)}",
            )
        )
    drawdown = (account.peak_equity - account.equity) / account.peak_equity
    drawdown_limit = limit_decimal(limits.max_drawdown_fraction)
    if drawdown > drawdown_limit:
        blocks.append(
            RiskBlock(
                Rule.MAX_DRAWDOWN,
                float(drawdown),
                limits.max_drawdown_fraction,
                f"drawdown {format_number(drawdown)} from peak equity "
                f"{format_number(account.peak_equity)} exceeds the limit "
                f"{format_number(drawdown_limit)}",
            )
        )
    return tuple(blocks)
