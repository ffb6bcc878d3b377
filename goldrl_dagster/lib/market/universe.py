"""The configured market universe: which instruments goldrl ingests, and from which day.

Both come from the environment (``GOLDRL_INSTRUMENTS``, ``GOLDRL_MARKET_START``) so one
deployment can narrow or widen coverage without code changes. They are read and validated by
:func:`goldrl_dagster.lib.config.load_settings`, like every ``GOLDRL_*`` variable: a typo fails
with a :class:`~goldrl_dagster.lib.config.SettingsError` naming the variable instead of
ingesting nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS, resolve_symbol
from goldrl_dagster.lib.config import DEFAULT_MARKET_START as DEFAULT_MARKET_START
from goldrl_dagster.lib.config import load_settings

INSTRUMENTS_ENV = "GOLDRL_INSTRUMENTS"
MARKET_START_ENV = "GOLDRL_MARKET_START"


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
        env: Environment to read (defaults to the process environment).

    Returns:
        Exchange symbols, in configured order.

    Raises:
        SettingsError: If an entry is unknown or the list names no instrument (or another
            ``GOLDRL_*`` variable is malformed); the message names the variable.
    """
    return load_settings(env).instruments


def market_start_date(env: Mapping[str, str] | None = None) -> date:
    """Return the first UTC day of market-data partitions, from ``GOLDRL_MARKET_START``.

    Args:
        env: Environment to read (defaults to the process environment).

    Returns:
        The configured day, or 2025-01-01.

    Raises:
        SettingsError: If the value is not a ``YYYY-MM-DD`` date between 2010-01-01 and today
            (or another ``GOLDRL_*`` variable is malformed); the message names the variable.
    """
    return load_settings(env).market_start
