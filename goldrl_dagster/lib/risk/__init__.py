"""Pre-trade risk: limits, rules, trading states and the kill switch (pure; no I/O, no clock).

Paper and live trading both send every order through :func:`check_order`; the engine keeps a
:class:`RiskStateMachine` and persists its transitions and every verdict's blocks.
"""

from goldrl_dagster.lib.risk.check import check_order
from goldrl_dagster.lib.risk.inputs import AccountSnapshot, MarketSnapshot, OrderProposal
from goldrl_dagster.lib.risk.kill_switch import (
    KillSwitchPlan,
    OrderCancel,
    engage_kill_switch,
    plan_kill_switch,
)
from goldrl_dagster.lib.risk.limits import DEFAULT_LIMITS, RISK_LIMITS_KIND, RiskLimits
from goldrl_dagster.lib.risk.rules import estimated_liquidation_price
from goldrl_dagster.lib.risk.state import (
    ResumeRefusedError,
    RiskStateMachine,
    TradingState,
    Transition,
)
from goldrl_dagster.lib.risk.verdict import RiskBlock, RiskVerdict, Rule

__all__ = [
    "DEFAULT_LIMITS",
    "RISK_LIMITS_KIND",
    "AccountSnapshot",
    "KillSwitchPlan",
    "MarketSnapshot",
    "OrderCancel",
    "OrderProposal",
    "ResumeRefusedError",
    "RiskBlock",
    "RiskLimits",
    "RiskStateMachine",
    "RiskVerdict",
    "Rule",
    "TradingState",
    "Transition",
    "check_order",
    "engage_kill_switch",
    "estimated_liquidation_price",
    "plan_kill_switch",
]
