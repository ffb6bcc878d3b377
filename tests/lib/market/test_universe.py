"""Configured instruments and market start date, read through the validated settings."""

from datetime import date

import pytest

from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS
from goldrl_dagster.lib.config import SettingsError
from goldrl_dagster.lib.market.universe import (
    DEFAULT_MARKET_START,
    configured_instruments,
    market_start_date,
)


def test_default_is_every_gold_symbol():
    assert configured_instruments({}) == GOLD_SYMBOLS
    assert configured_instruments({"GOLDRL_INSTRUMENTS": "  "}) == GOLD_SYMBOLS


def test_aliases_resolve_and_duplicates_collapse_in_order():
    env = {"GOLDRL_INSTRUMENTS": "PAXGUSDT, Gold-USDT,xaut_usdt,, paxg-usdt"}
    assert configured_instruments(env) == ("PAXG-USDT", "XAUT-USDT")


def test_single_instrument():
    assert configured_instruments({"GOLDRL_INSTRUMENTS": "XAUTUSDT"}) == ("XAUT-USDT",)


def test_unknown_symbol_is_a_clear_error():
    with pytest.raises(SettingsError, match="GOLDRL_INSTRUMENTS='XAUT-USDT,BTC-USDT'"):
        configured_instruments({"GOLDRL_INSTRUMENTS": "XAUT-USDT,BTC-USDT"})
    with pytest.raises(SettingsError, match="GOLDRL_INSTRUMENTS='GOLD-USD'"):
        configured_instruments({"GOLDRL_INSTRUMENTS": "GOLD-USD"})


def test_a_list_of_only_separators_is_an_error_not_an_empty_universe():
    with pytest.raises(SettingsError, match="GOLDRL_INSTRUMENTS"):
        configured_instruments({"GOLDRL_INSTRUMENTS": ",,"})


def test_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("GOLDRL_INSTRUMENTS", "paxgusdt")
    monkeypatch.setenv("GOLDRL_MARKET_START", "2025-02-03")
    assert configured_instruments() == ("PAXG-USDT",)
    assert market_start_date() == date(2025, 2, 3)


def test_market_start_default_and_value():
    assert market_start_date({}) == DEFAULT_MARKET_START == date(2025, 1, 1)
    assert market_start_date({"GOLDRL_MARKET_START": "2024-06-30"}) == date(2024, 6, 30)


@pytest.mark.parametrize("text", ["2025-13-01", "01/02/2025", "2025-1-1", "yesterday", "20250101"])
def test_market_start_rejects_malformed_dates(text):
    with pytest.raises(SettingsError, match="GOLDRL_MARKET_START"):
        market_start_date({"GOLDRL_MARKET_START": text})


def test_market_start_rejects_implausibly_early_dates():
    with pytest.raises(SettingsError, match=r"GOLDRL_MARKET_START='1999-01-01'.*2010-01-01"):
        market_start_date({"GOLDRL_MARKET_START": "1999-01-01"})
