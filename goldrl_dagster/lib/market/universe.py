"""The configured market universe: which instruments goldrl ingests, and from which day.

Both come from the environment so one deployment can narrow or widen coverage without code
changes. Values are validated when read; a typo fails loudly instead of ingesting nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date

from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS, resolve_symbol

INSTRUMENTS_ENV = "GOLDRL_INSTRUMENTS"
MARKET_START_ENV = "GOLDRL_MARKET_START"
# Early enough for a backfill to reach the first candle of the gold contracts (and the
# simulator's listing date); partitions before a listing complete empty.
DEFAULT_MARKET_START = date(2025, 1, 1)


def parse_instruments(text: str) -> tuple[str, ...]:
    """Parse a comma-separated instrument list into exchange symbols.

    Args:
        text: e.g. ``"Gold-USDT, PAXGUSDT"``. Aliases resolve with
            :func:`~goldrl_dagster.lib.bingx.symbols.resolve_symbol`.

    Returns:
        The symbols in first-seen order, duplicates (also via aliases) removed.

    Raises:
        UnknownSymbolError: If an entry is not a known gold perpetual.
        ValueError: If the list holds no symbol at all.
    """
    out: list[str] = []
    for entry in text.split(","):
        if not entry.strip():
            continue
        symbol = resolve_symbol(entry.strip())
        if symbol not in out:
            out.append(symbol)
    if not out:
        raise ValueError(
            f"{INSTRUMENTS_ENV}={text!r} names no instrument; list symbols such as "
            f"{','.join(GOLD_SYMBOLS)} or unset it for the default"
        )
    return tuple(out)


def configured_instruments(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Return the instruments to ingest, from ``GOLDRL_INSTRUMENTS`` (default: every gold symbol).

    Args:
        env: Environment to read (defaults to ``os.environ``).

    Returns:
        Exchange symbols, in configured order.

    Raises:
        UnknownSymbolError: If an entry is unknown.
        ValueError: If the variable is set but names no instrument.
    """
    environ = os.environ if env is None else env
    text = environ.get(INSTRUMENTS_ENV)
    if text is None or text.strip() == "":
        return GOLD_SYMBOLS
    return parse_instruments(text)


def market_start_date(env: Mapping[str, str] | None = None) -> date:
    """Return the first UTC day of market-data partitions, from ``GOLDRL_MARKET_START``.

    Args:
        env: Environment to read (defaults to ``os.environ``).

    Returns:
        The configured day, or 2025-01-01.

    Raises:
        ValueError: If the value is not a ``YYYY-MM-DD`` date, or lies before 2010 (BingX did
            not exist; the value is almost certainly a typo).
    """
    environ = os.environ if env is None else env
    text = (environ.get(MARKET_START_ENV) or "").strip()
    if not text:
        return DEFAULT_MARKET_START
    try:
        if len(text) != 10:
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{MARKET_START_ENV}={text!r} is not a date; use YYYY-MM-DD, e.g. 2025-01-01"
        ) from None
    if day.year < 2010:
        raise ValueError(f"{MARKET_START_ENV}={text!r} is before any BingX listing; check it")
    return day
