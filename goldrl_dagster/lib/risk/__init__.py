"""Pre-trade risk: limits, rules, trading states and the kill switch (pure; no I/O, no clock)."""

from goldrl_dagster.lib.risk.inputs import AccountSnapshot, MarketSnapshot, OrderProposal
from goldrl_dagster.lib.risk.limits import DEFAULT_LIMITS, RISK_LIMITS_KIND, RiskLimits
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
    "MarketSnapshot",
    "OrderProposal",
    "ResumeRefusedError",
    "RiskBlock",
    "RiskLimits",
    "RiskStateMachine",
    "RiskVerdict",
    "Rule",
    "TradingState",
    "Transition",
]
