import pytest

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.rl.costs import CostModel


def _spec(taker: float) -> InstrumentSpec:
    return InstrumentSpec(
        symbol="XAUT-USDT",
        asset="XAUT",
        currency="USDT",
        price_precision=2,
        quantity_precision=4,
        min_quantity=0.0001,
        min_notional=2.0,
        maker_fee_rate=0.0002,
        taker_fee_rate=taker,
    )


def test_from_instrument_uses_the_taker_fee():
    model = CostModel.from_instrument(_spec(0.0005), slippage_bps=2.0)
    assert model == CostModel(taker_fee_rate=0.0005, slippage_bps=2.0)


def test_cost_is_proportional_to_notional_traded():
    model = CostModel(taker_fee_rate=0.0005, slippage_bps=1.0)  # 5 bps fee + 1 bp slippage
    assert model.cost_fraction(0) == 0.0
    assert model.cost_fraction(1) == pytest.approx(0.0006)
    # A flip from short to long trades two units of notional.
    assert model.cost_fraction(2) == pytest.approx(0.0012)
    assert model.cost_fraction(-2) == model.cost_fraction(2)
    assert CostModel(0.0, 0.0).cost_fraction(2) == 0.0


def test_fingerprint_is_stable_and_tracks_parameters():
    a = CostModel(0.0005, 1.0)
    assert a.fingerprint == CostModel(0.0005, 1.0).fingerprint
    assert CostModel(0, 1).fingerprint == CostModel(0.0, 1.0).fingerprint
    assert (
        len({a.fingerprint, CostModel(0.0006, 1.0).fingerprint, CostModel(0.0005, 2.0).fingerprint})
        == 3
    )


@pytest.mark.parametrize(
    ("fee", "slippage"), [(-0.001, 1.0), (float("nan"), 1.0), (0.5, 1.0), (0.0005, -1.0)]
)
def test_invalid_rates_are_rejected(fee, slippage):
    with pytest.raises(ValueError, match="must be"):
        CostModel(fee, slippage)


def test_non_finite_position_change_is_rejected():
    with pytest.raises(ValueError, match="finite"):
        CostModel(0.0005).cost_fraction(float("inf"))
