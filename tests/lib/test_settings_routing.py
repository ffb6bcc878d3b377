"""Modules read their GOLDRL_* variables through load_settings: a bad value names the variable.

Each reader below used to parse its variable from ``os.environ`` on its own (or not at all);
now every one goes through :func:`goldrl_dagster.lib.config.load_settings`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from expectations.outliers import return_threshold
from goldrl_dagster.lib.config import SettingsError, load_settings
from goldrl_dagster.lib.market.closures import configured_closures
from goldrl_dagster.lib.market.universe import configured_instruments, market_start_date
from goldrl_dagster.lib.storage.server import resolve_database, schema_name


def test_malformed_instruments_name_the_variable(monkeypatch):
    monkeypatch.setenv("GOLDRL_INSTRUMENTS", "XAUT-USDT,DOGE-USDT")
    with pytest.raises(SettingsError, match=r"^GOLDRL_INSTRUMENTS='XAUT-USDT,DOGE-USDT'"):
        configured_instruments()
    monkeypatch.setenv("GOLDRL_INSTRUMENTS", "paxgusdt")
    assert configured_instruments() == ("PAXG-USDT",)


@pytest.mark.parametrize("value", ["2025-02-30", "2025/01/01", "1999-12-31", "9999-01-01"])
def test_malformed_market_start_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("GOLDRL_MARKET_START", value)
    with pytest.raises(SettingsError, match=rf"^GOLDRL_MARKET_START='{value}'"):
        market_start_date()


def test_market_start_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("GOLDRL_MARKET_START", "2025-02-03")
    assert market_start_date() == date(2025, 2, 3)


@pytest.mark.parametrize(
    "content", ["closures: [", "closures:\n  - start: tomorrow\n", "weekly: [{day: Funday}]\n"]
)
def test_malformed_closures_file_names_the_variable(monkeypatch, tmp_path: Path, content):
    path = tmp_path / "closures.yaml"
    path.write_text(content)
    monkeypatch.setenv("GOLDRL_VENUE_CLOSURES", str(path))
    with pytest.raises(SettingsError, match=r"^GOLDRL_VENUE_CLOSURES="):
        configured_closures()


def test_missing_closures_file_names_the_variable(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("GOLDRL_VENUE_CLOSURES", str(tmp_path / "absent.yaml"))
    with pytest.raises(SettingsError, match=r"^GOLDRL_VENUE_CLOSURES=.*absent\.yaml"):
        configured_closures()
    monkeypatch.delenv("GOLDRL_VENUE_CLOSURES")
    assert configured_closures().closures == ()


@pytest.mark.parametrize("value", ["Goldrl", "gold rl", "pg_goldrl", "goldrl;drop", "x" * 60])
def test_malformed_schema_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("GOLDRL_SCHEMA", value)
    with pytest.raises(SettingsError, match=r"^GOLDRL_SCHEMA="):
        schema_name()


def test_the_database_uses_the_settings_schema(monkeypatch):
    monkeypatch.setenv("GOLDRL_DATABASE_URL", "postgresql://goldrl@db.invalid/goldrl")
    monkeypatch.setenv("GOLDRL_SCHEMA", "goldrl_elsewhere")
    settings = load_settings()
    # The schema comes from the settings object, not a second read of the environment.
    monkeypatch.setenv("GOLDRL_SCHEMA", "Not Valid")
    assert resolve_database(settings).schema == "goldrl_elsewhere"


def test_malformed_outlier_thresholds_name_the_variable(monkeypatch):
    monkeypatch.setenv("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": "high"}')
    with pytest.raises(SettingsError, match=r"^GOLDRL_RETURN_OUTLIER_THRESHOLDS="):
        return_threshold("1m")


def test_an_explicit_environment_is_read_instead_of_the_process_one(monkeypatch):
    monkeypatch.setenv("GOLDRL_INSTRUMENTS", "not-a-symbol")
    assert configured_instruments({"GOLDRL_INSTRUMENTS": "XAUTUSDT"}) == ("XAUT-USDT",)
    with pytest.raises(SettingsError, match="GOLDRL_INSTRUMENTS"):
        configured_instruments()
