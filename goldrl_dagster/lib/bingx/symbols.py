"""The gold perpetuals goldrl trades, and the aliases users type for them."""

from __future__ import annotations

import re

from goldrl_dagster.lib.bingx.errors import UnknownSymbolError

GOLD_SYMBOLS: tuple[str, ...] = ("XAUT-USDT", "PAXG-USDT")

UNKNOWN_SYMBOL_CODE = 109425

# Base-asset spellings that mean one of the real contracts. BingX lists no GOLD-USDT: "gold"
# means Tether Gold, the deeper of the two books.
_BASE_ALIASES: dict[str, str] = {"XAUT": "XAUT", "GOLD": "XAUT", "XAU": "XAUT", "PAXG": "PAXG"}
_QUOTES = ("USDT",)


def resolve_symbol(name: str) -> str:
    """Map a user-facing symbol spelling to the BingX swap symbol.

    Accepts any case and the separators ``-``, ``_``, ``/`` or none, e.g. ``Gold-USDT``,
    ``XAUTUSDT``, ``xaut_usdt`` (all ``XAUT-USDT``) and ``PAXGUSDT`` (``PAXG-USDT``).

    Args:
        name: The symbol as written by a user or a configuration file.

    Returns:
        One of :data:`GOLD_SYMBOLS`.

    Raises:
        UnknownSymbolError: If the name is not a known gold perpetual.
    """
    if not isinstance(name, str):
        raise UnknownSymbolError(
            UNKNOWN_SYMBOL_CODE, f"symbol must be a string, got {type(name).__name__}"
        )
    compact = re.sub(r"[\s\-_/]", "", name).upper()
    for quote in _QUOTES:
        if compact.endswith(quote):
            base = _BASE_ALIASES.get(compact[: -len(quote)])
            if base is not None:
                symbol = f"{base}-{quote}"
                if symbol in GOLD_SYMBOLS:
                    return symbol
    raise UnknownSymbolError(
        UNKNOWN_SYMBOL_CODE,
        f"unknown symbol {name!r}; goldrl trades {', '.join(GOLD_SYMBOLS)} "
        "(aliases such as Gold-USDT, XAUTUSDT or PAXGUSDT are accepted)",
    )
