"""Risk test fixtures: round limits so that boundaries are exact decimals."""

import pytest

from goldrl_dagster.lib.risk import RiskLimits


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
