"""A baseline scenario every risk test starts from: nothing in it breaches any limit.

XAUT-USDT marked at 2000, a flat account with 2000 USDT equity at 2x, fresh inputs, and
round limits so that boundaries are exact decimals (a value equal to its limit passes).
"""

from collections.abc import Callable
from decimal import Decimal

import pytest

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import (
    AccountSnapshot,
    MarketSnapshot,
    OrderProposal,
    RiskLimits,
    RiskVerdict,
    TradingState,
    check_order,
)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms
SYMBOL = "XAUT-USDT"


@pytest.fixture
def spec() -> InstrumentSpec:
    return InstrumentSpec(
        symbol=SYMBOL,
        asset="XAUT",
        currency="USDT",
        price_precision=1,
        quantity_precision=4,
        min_quantity=0.001,
        min_notional=1.0,
        maker_fee_rate=0.0002,
        taker_fee_rate=0.0005,
        max_long_leverage=50,
        max_short_leverage=50,
    )


@pytest.fixture
def limits() -> RiskLimits:
    return RiskLimits(
        version=1,
        max_position_notional=1000.0,
        max_exposure_fraction=1.0,
        max_leverage=5,
        max_order_notional=500.0,
        price_band_fraction=0.01,
        max_orders_per_minute=5,
        max_bar_age_s=120.0,
        max_mark_age_s=10.0,
        max_account_age_s=30.0,
        daily_loss_limit=100.0,
        max_drawdown_fraction=0.1,
        maintenance_margin_rate=0.005,
        liquidation_buffer_fraction=0.1,
        circuit_breaker_failures=3,
        cooldown_s=600.0,
    )


@pytest.fixture
def market() -> MarketSnapshot:
    return MarketSnapshot(
        instrument=SYMBOL,
        mark_price=Decimal("2000"),
        mark_time_ms=NOW - 1_000,
        bar_open_time_ms=NOW - 61_000,
        bar_close_time_ms=NOW - 1_001,
    )


@pytest.fixture
def account() -> AccountSnapshot:
    return AccountSnapshot(
        instrument=SYMBOL,
        equity=Decimal("2000"),
        available_margin=Decimal("2000"),
        position_quantity=Decimal("0"),
        position_entry_price=None,
        leverage=2,
        snapshot_time_ms=NOW - 1_000,
        day_start_equity=Decimal("2000"),
        peak_equity=Decimal("2000"),
    )


def order(
    side: str = "BUY",
    quantity: str = "0.1",
    price: str = "2000",
    *,
    reduce_only: bool = False,
    order_type: str = "MARKET",
    purpose: str = "trade",
) -> OrderProposal:
    return OrderProposal(
        instrument=SYMBOL,
        side=side,  # type: ignore[arg-type]
        quantity=Decimal(quantity),
        reference_price=Decimal(price),
        reduce_only=reduce_only,
        order_type=order_type,  # type: ignore[arg-type]
        purpose=purpose,  # type: ignore[arg-type]
    )


@pytest.fixture
def make_order() -> Callable[..., OrderProposal]:
    return order


@pytest.fixture
def check(
    spec: InstrumentSpec, limits: RiskLimits, market: MarketSnapshot, account: AccountSnapshot
) -> Callable[..., RiskVerdict]:
    """check_order with the baseline inputs; keyword arguments replace any of them."""

    def run(proposal: OrderProposal, **overrides: object) -> RiskVerdict:
        inputs: dict[str, object] = {
            "limits": limits,
            "state": TradingState.ACTIVE,
            "market": market,
            "account": account,
            "instrument": spec,
            "now_ms": NOW,
            "recent_order_times_ms": (),
        }
        inputs.update(overrides)
        return check_order(proposal, **inputs)  # type: ignore[arg-type]

    return run


@pytest.fixture
def now() -> int:
    return NOW
