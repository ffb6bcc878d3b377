"""The contract rules in force now: the newest stored version of an instrument's rules.

``sync_instruments`` (the ``market/instruments`` asset, daily by schedule) writes a new version
when the exchange's rules change, valid from the exchange's clock at the fetch; migration 0028
announces each new version on ``NOTIFY goldrl_instrument_rules`` (JSON: ``symbol``,
``valid_from``, ``content_sha256``). A running live engine re-reads the version in force here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.storage.market_store import instrument_at
from goldrl_dagster.lib.storage.server import Database

RULES_CHANNEL = "goldrl_instrument_rules"
"""The NOTIFY channel of new contract-rules versions (see migration 0028)."""


@dataclass(frozen=True)
class RulesVersion:
    """One stored version of a contract's rules.

    Attributes:
        spec: The rules.
        valid_from: When the version became valid (the exchange's clock at the fetch).
    """

    spec: InstrumentSpec
    valid_from: datetime


def current_rules(db: Database, symbol: str) -> RulesVersion:
    """The newest version of ``symbol``'s rules (the one not yet closed).

    Raises:
        LookupError: If no rules are stored for the symbol (materialize market/instruments).
    """
    with db.connect() as conn:
        row = conn.execute(
            "SELECT valid_from FROM instruments WHERE symbol = %s AND valid_to IS NULL",
            (symbol,),
        ).fetchone()
    if row is None:
        raise LookupError(
            f"no contract rules stored for {symbol}; materialize the market/instruments asset"
        )
    return RulesVersion(instrument_at(db, symbol, row[0]), row[0])


def parse_rules_notice(payload: str) -> str:
    """The symbol of a ``goldrl_instrument_rules`` notification.

    Raises:
        ValueError: If the payload is not a JSON object with a non-empty ``symbol`` string.
    """
    try:
        data = json.loads(payload)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from exc
    symbol = data.get("symbol") if isinstance(data, dict) else None
    if not isinstance(symbol, str) or not symbol.strip():
        raise ValueError(f"'symbol' must be a non-empty string, got {symbol!r}")
    return symbol


def rules_summary(spec: InstrumentSpec) -> dict[str, object]:
    """The rules an order and its costs depend on, JSON-ready (for logs and the audit log)."""
    return {
        "price_precision": spec.price_precision,
        "quantity_precision": spec.quantity_precision,
        "min_quantity": spec.min_quantity,
        "min_notional": spec.min_notional,
        "maker_fee_rate": spec.maker_fee_rate,
        "taker_fee_rate": spec.taker_fee_rate,
        "max_long_leverage": spec.max_long_leverage,
        "max_short_leverage": spec.max_short_leverage,
        "status": spec.status,
        "content_sha256": spec.content_sha256(),
    }
