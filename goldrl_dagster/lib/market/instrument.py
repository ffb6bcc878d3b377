"""Contract metadata of a perpetual, as BingX publishes it (no tick/step size fields exist)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class InstrumentSpec:
    """One perpetual contract's trading rules.

    BingX gives precisions, not increments: the price step is ``10**-price_precision`` and the
    quantity step ``10**-quantity_precision`` (``quantity_precision`` may be 0).

    Attributes:
        symbol: Exchange symbol, e.g. ``XAUT-USDT``.
        asset: Base asset, e.g. ``XAUT``.
        currency: Quote/settlement currency, e.g. ``USDT``.
        price_precision: Decimal places of prices.
        quantity_precision: Decimal places of quantities.
        min_quantity: Smallest order quantity in base units (``tradeMinQuantity``).
        min_notional: Smallest order notional in quote units (``tradeMinUSDT``).
        maker_fee_rate: Maker fee as a fraction of notional.
        taker_fee_rate: Taker fee as a fraction of notional.
        max_long_leverage: Highest leverage for longs.
        max_short_leverage: Highest leverage for shorts.
        launch_time: Listing time (UTC), if published.
        contract_id: Exchange contract id.
        display_name: Human-readable name.
        contract_size: Contract size (``size``), if published.
        status: Exchange status code (1 = trading).
        raw: The exchange's record as received, for audit.
    """

    symbol: str
    asset: str
    currency: str
    price_precision: int
    quantity_precision: int
    min_quantity: float
    min_notional: float
    maker_fee_rate: float
    taker_fee_rate: float
    max_long_leverage: int | None = None
    max_short_leverage: int | None = None
    launch_time: datetime | None = None
    contract_id: str | None = None
    display_name: str | None = None
    contract_size: float | None = None
    status: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def price_increment(self) -> float:
        """Smallest price step."""
        return 10.0**-self.price_precision

    @property
    def quantity_increment(self) -> float:
        """Smallest quantity step."""
        return 10.0**-self.quantity_precision

    def content_sha256(self) -> str:
        """Checksum of the trading rules (not the raw record), to detect metadata changes."""
        rules = {k: v for k, v in asdict(self).items() if k != "raw"}
        rules["launch_time"] = self.launch_time.isoformat() if self.launch_time else None
        return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()
