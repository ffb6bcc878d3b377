"""THE cost model: what a trade and a held position cost, shared by every place that trades.

The training env, the Nautilus evaluation and the live engine's paper broker all charge costs
through one ``CostModel``, so a policy is scored under the costs it was trained on and its
fingerprint (stored with every model and evaluation) says which costs those were.

Conventions (all amounts in the quote currency, e.g. USDT):

* A market order of ``side`` (+1 buy, -1 sell) at a reference price ``p`` (the bar's close)
  fills at ``p × (1 + side × s)`` where the slippage fraction
  ``s = slippage_bps / 10_000 + slippage_range_fraction × (high - low) / close`` has a fixed
  part and a volatility part proportional to the bar's relative range.
* The fee is ``|quantity| × fill_price × fee_rate`` (taker unless told maker).
* Funding: at each funding event a position of ``q`` base units marked at ``m`` pays
  ``q × m × rate`` (longs pay when the rate is positive, shorts receive; negative rates
  reverse it), as on BingX perpetuals.
* Quantities are rounded half-to-even to ``quantity_precision`` decimals; an order must reach
  ``min_quantity`` base units and ``min_notional`` quote units.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from goldrl_dagster.lib.market.instrument import InstrumentSpec

COST_MODEL_KIND = "goldrl-cost/2"

# Upper bounds that catch unit mistakes (a fee of 5 meant as 5 bps, not 500%).
_RATE_LIMIT = 0.1
_SLIPPAGE_BPS_LIMIT = 1000.0
_RANGE_FRACTION_LIMIT = 10.0
_LEVERAGE_LIMIT = 1000.0
_PRECISION_LIMIT = 12


def check_number(name: str, value: object, low: float, high: float) -> None:
    """Reject a setting that is not a finite real number in ``[low, high]``.

    Args:
        name: The setting's name, used in the error.
        value: The value to check (a bool is not a number here).
        low: Smallest allowed value.
        high: Largest allowed value.

    Raises:
        ValueError: Naming the setting and the value when it is not a finite number in range.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def per_bar_values(name: str, values: np.ndarray | None, n_bars: int) -> np.ndarray:
    """A per-bar cost input (funding rates, bar ranges) as a private float64 copy.

    Args:
        name: The input's name, used in errors.
        values: One value per bar; ``None`` means zero at every bar.
        n_bars: Number of bars.

    Returns:
        The values as a new float64 array of shape ``(n_bars,)``.

    Raises:
        ValueError: If the shape is not ``(n_bars,)`` or a value is NaN/inf (naming the bar).
    """
    if values is None:
        return np.zeros(n_bars, dtype=np.float64)
    array = np.array(values, dtype=np.float64, copy=True)
    if array.shape != (n_bars,):
        raise ValueError(
            f"{name} must have one value per bar, shape ({n_bars},), got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        first = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"{name} hold NaN/inf (first at bar {first}: {array[first]})")
    return array


@dataclass(frozen=True)
class CostModel:
    """Fees, slippage, funding, leverage and order-size rules of one instrument.

    Attributes:
        taker_fee_rate: Taker fee as a fraction of notional (e.g. 0.0005 for 5 bps).
        maker_fee_rate: Maker fee as a fraction of notional (may be negative: a rebate).
        slippage_bps: Fixed slippage per unit of notional traded, in basis points.
        slippage_range_fraction: Volatility slippage: this fraction of the bar's relative
            range ``(high - low) / close`` is added to the slippage fraction.
        quantity_precision: Decimal places of order quantities.
        min_quantity: Smallest order quantity in base units.
        min_notional: Smallest order notional in quote units.
        leverage: Leverage used for sizing (position notional up to ``equity × leverage``).
        charge_funding: Whether funding payments are charged at funding events.
    """

    taker_fee_rate: float
    maker_fee_rate: float = 0.0
    slippage_bps: float = 1.0
    slippage_range_fraction: float = 0.0
    quantity_precision: int = 8
    min_quantity: float = 0.0
    min_notional: float = 0.0
    leverage: float = 1.0
    charge_funding: bool = True

    def __post_init__(self) -> None:
        """Validate every parameter.

        Raises:
            ValueError: Naming the parameter that is of the wrong type, not finite or out of
                its plausible range.
        """
        check_number("taker_fee_rate", self.taker_fee_rate, 0.0, _RATE_LIMIT)
        check_number("maker_fee_rate", self.maker_fee_rate, -_RATE_LIMIT, _RATE_LIMIT)
        check_number("slippage_bps", self.slippage_bps, 0.0, _SLIPPAGE_BPS_LIMIT)
        check_number(
            "slippage_range_fraction", self.slippage_range_fraction, 0.0, _RANGE_FRACTION_LIMIT
        )
        if (
            isinstance(self.quantity_precision, bool)
            or not isinstance(self.quantity_precision, int)
            or not 0 <= self.quantity_precision <= _PRECISION_LIMIT
        ):
            raise ValueError(
                f"quantity_precision must be an int in [0, {_PRECISION_LIMIT}], "
                f"got {self.quantity_precision!r}"
            )
        check_number("min_quantity", self.min_quantity, 0.0, math.inf)
        check_number("min_notional", self.min_notional, 0.0, math.inf)
        check_number("leverage", self.leverage, 0.0, _LEVERAGE_LIMIT)
        if self.leverage == 0:
            raise ValueError("leverage must be positive, got 0")
        if not isinstance(self.charge_funding, bool):
            raise ValueError(f"charge_funding must be a bool, got {self.charge_funding!r}")

    @classmethod
    def from_instrument(
        cls,
        spec: InstrumentSpec,
        *,
        slippage_bps: float = 1.0,
        slippage_range_fraction: float = 0.0,
        leverage: float | None = None,
        charge_funding: bool = True,
    ) -> CostModel:
        """The costs of trading an instrument under its published contract rules.

        Args:
            spec: The instrument's contract metadata (fees, precision, minimums, leverage).
            slippage_bps: Fixed slippage in basis points.
            slippage_range_fraction: Fraction of the bar's relative range added as slippage.
            leverage: Sizing leverage; ``None`` means 1 (unleveraged).
            charge_funding: Whether funding is charged.

        Returns:
            The cost model.

        Raises:
            ValueError: If a parameter is invalid or ``leverage`` exceeds the contract's
                maximum long or short leverage.
        """
        lev = 1.0 if leverage is None else leverage
        limits = [x for x in (spec.max_long_leverage, spec.max_short_leverage) if x is not None]
        if limits and isinstance(lev, int | float) and lev > min(limits):
            raise ValueError(
                f"leverage {lev} exceeds {spec.symbol}'s maximum leverage {min(limits)}"
            )
        return cls(
            taker_fee_rate=float(spec.taker_fee_rate),
            maker_fee_rate=float(spec.maker_fee_rate),
            slippage_bps=slippage_bps,
            slippage_range_fraction=slippage_range_fraction,
            quantity_precision=int(spec.quantity_precision),
            min_quantity=float(spec.min_quantity),
            min_notional=float(spec.min_notional),
            leverage=float(lev) if isinstance(lev, int | float) else lev,
            charge_funding=charge_funding,
        )

    @property
    def quantity_step(self) -> float:
        """Smallest quantity increment, ``10 ** -quantity_precision``."""
        return 10.0**-self.quantity_precision

    def slippage_fraction(self, bar_range_rel: float) -> float:
        """Slippage as a fraction of the reference price.

        Args:
            bar_range_rel: The bar's ``(high - low) / close`` (0 when unknown).

        Returns:
            ``slippage_bps / 10_000 + slippage_range_fraction × bar_range_rel``.

        Raises:
            ValueError: If ``bar_range_rel`` is negative or not finite.
        """
        if not math.isfinite(bar_range_rel) or bar_range_rel < 0:
            raise ValueError(f"bar_range_rel must be finite and >= 0, got {bar_range_rel}")
        return self.slippage_bps / 10_000.0 + self.slippage_range_fraction * bar_range_rel

    def slippage_fractions(self, bar_range_rel: np.ndarray) -> np.ndarray:
        """``slippage_fraction`` of many bars at once (float64 array of the same shape).

        Raises:
            ValueError: If any value is negative or not finite (the first bad index is named).
        """
        ranges = np.asarray(bar_range_rel, dtype=np.float64)
        bad = ~np.isfinite(ranges) | (ranges < 0)
        if np.any(bad):
            first = int(np.flatnonzero(bad.ravel())[0])
            raise ValueError(
                f"bar_range_rel must be finite and >= 0; index {first} is {ranges.ravel()[first]}"
            )
        return self.slippage_bps / 10_000.0 + self.slippage_range_fraction * ranges

    def fill_price(self, side: int, reference_price: float, bar_range_rel: float) -> float:
        """The price a market order fills at.

        Args:
            side: +1 for a buy, -1 for a sell.
            reference_price: The price the order is sent at (the bar's close).
            bar_range_rel: The bar's ``(high - low) / close``.

        Returns:
            ``reference_price × (1 + side × slippage_fraction(bar_range_rel))``.

        Raises:
            ValueError: If the side is not ±1, the price is not positive and finite, or the
                range is invalid.
        """
        if side not in (1, -1) or isinstance(side, bool):
            raise ValueError(f"side must be +1 (buy) or -1 (sell), got {side!r}")
        if not math.isfinite(reference_price) or reference_price <= 0:
            raise ValueError(f"reference_price must be positive, got {reference_price}")
        return reference_price * (1.0 + side * self.slippage_fraction(bar_range_rel))

    def fee(self, notional: float, *, maker: bool = False) -> float:
        """Fee on a traded notional (its sign is ignored).

        Args:
            notional: Traded notional in quote units.
            maker: Charge the maker rate instead of the taker rate.

        Returns:
            ``|notional| × rate``.

        Raises:
            ValueError: If the notional is not finite.
        """
        if not math.isfinite(notional):
            raise ValueError(f"notional must be finite, got {notional}")
        return abs(notional) * (self.maker_fee_rate if maker else self.taker_fee_rate)

    def trade_cost(
        self, quantity: float, reference_price: float, bar_range_rel: float, *, maker: bool = False
    ) -> float:
        """Everything a market order costs against trading at the reference price.

        Slippage cost ``|q| × p × s`` plus the fee on the filled notional
        ``|q| × p × (1 ± s)``; what an engine that fills at the reference price must charge
        to match ``fill_price`` + ``fee`` (positive for both sides).

        Args:
            quantity: Signed order quantity (positive buys, negative sells).
            reference_price: The price the order is sent at.
            bar_range_rel: The bar's ``(high - low) / close``.
            maker: Charge the maker fee.

        Returns:
            The cost in quote units (0 for a zero quantity).

        Raises:
            ValueError: If an input is invalid.
        """
        if not math.isfinite(quantity):
            raise ValueError(f"quantity must be finite, got {quantity}")
        if quantity == 0:
            return 0.0
        side = 1 if quantity > 0 else -1
        price = self.fill_price(side, reference_price, bar_range_rel)
        size = abs(quantity)
        return size * abs(price - reference_price) + self.fee(size * price, maker=maker)

    def round_quantity(self, quantity: float) -> float:
        """Round a quantity half-to-even to ``quantity_precision`` decimals.

        Decimal arithmetic on the float's shortest repr, so 0.125 at 2 decimals gives 0.12 and
        0.135 gives 0.14 (the value a human typed, not its binary neighbour).

        Raises:
            ValueError: If the quantity is not finite.
        """
        if not math.isfinite(quantity):
            raise ValueError(f"quantity must be finite, got {quantity}")
        scale = 10.0**self.quantity_precision
        scaled = quantity * scale
        # Fast path (the env calls this per trade): away from a tie, the nearest integer of the
        # scaled float is the decimal answer, and int / 10**p is the float nearest to it.
        if abs(abs(scaled - math.floor(scaled)) - 0.5) > 1e-6 and abs(scaled) < 2.0**52:
            return round(scaled) / scale
        exponent = Decimal(1).scaleb(-self.quantity_precision)
        rounded = float(Decimal(repr(float(quantity))).quantize(exponent, ROUND_HALF_EVEN))
        return rounded + 0.0  # normalise -0.0

    def check_order(self, quantity: float, price: float) -> None:
        """Refuse an order the venue would reject.

        Args:
            quantity: Order quantity in base units (sign ignored).
            price: Expected price.

        Raises:
            ValueError: Naming the broken rule: zero/non-finite quantity, a quantity that is not
                a multiple of the quantity step, below ``min_quantity`` or a notional below
                ``min_notional``.
        """
        if not math.isfinite(quantity) or quantity == 0:
            raise ValueError(f"order quantity must be finite and non-zero, got {quantity}")
        if not math.isfinite(price) or price <= 0:
            raise ValueError(f"order price must be positive, got {price}")
        size = abs(quantity)
        if self.round_quantity(size) != size:
            raise ValueError(
                f"order quantity {size} is not a multiple of the quantity step "
                f"{self.quantity_step:g} (quantity_precision {self.quantity_precision})"
            )
        if size < self.min_quantity:
            raise ValueError(
                f"order quantity {size} is below the minimum quantity {self.min_quantity}"
            )
        if size * price < self.min_notional:
            raise ValueError(
                f"order notional {size * price:.4f} is below the minimum notional "
                f"{self.min_notional}"
            )

    def funding_payment(self, position_quantity: float, mark_price: float, rate: float) -> float:
        """Funding PAID by a position at one funding event (negative: received).

        Args:
            position_quantity: Signed position in base units (positive long).
            mark_price: Mark price at the funding time.
            rate: The funding rate of the event.

        Returns:
            ``position_quantity × mark_price × rate``, or 0 when funding is not charged.

        Raises:
            ValueError: If an input is not finite or the price is not positive.
        """
        if not (math.isfinite(position_quantity) and math.isfinite(rate)):
            raise ValueError(
                f"position_quantity and rate must be finite, got {position_quantity}, {rate}"
            )
        if not math.isfinite(mark_price) or mark_price <= 0:
            raise ValueError(f"mark_price must be positive, got {mark_price}")
        if not self.charge_funding:
            return 0.0
        return position_quantity * mark_price * rate

    def to_dict(self) -> dict[str, float | int | bool]:
        """The parameters as JSON-ready data."""
        return asdict(self)

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the model's kind and parameters (numbers as floats, flags as bools)."""
        doc: dict[str, object] = {"kind": COST_MODEL_KIND}
        for key, value in asdict(self).items():
            # Floats throughout, so CostModel(0) and CostModel(0.0) share a fingerprint.
            doc[key] = value if isinstance(value, bool) else float(value)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def relative_ranges(highs: np.ndarray, lows: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Bars' relative ranges ``(high - low) / close``, the input of the volatility slippage.

    Args:
        highs: Bar highs.
        lows: Bar lows.
        closes: Bar closes (positive).

    Returns:
        float64 array.

    Raises:
        ValueError: If shapes differ, values are not finite, closes are not positive or a
            high is below its low.
    """
    h, lo, c = (np.asarray(a, dtype=np.float64) for a in (highs, lows, closes))
    if not h.shape == lo.shape == c.shape:
        raise ValueError(
            f"highs, lows and closes differ in shape: {h.shape}, {lo.shape}, {c.shape}"
        )
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(lo)) and np.all(np.isfinite(c))):
        raise ValueError("highs, lows and closes must be finite")
    if np.any(c <= 0):
        raise ValueError("closes must be positive")
    if np.any(h < lo):
        first = int(np.flatnonzero(h < lo)[0])
        raise ValueError(f"high below low at bar {first}: {h[first]} < {lo[first]}")
    return (h - lo) / c
