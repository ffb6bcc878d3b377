"""Every malformed GOLDRL_* setting is one clear line naming the variable, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.config import SettingsError, load_settings, redact_url

PASSWORD = "s3cr3t-pw"

BAD = [
    ("GOLDRL_DATABASE_URL", "mysql://x"),
    ("GOLDRL_DATABASE_URL", f"mysql://goldrl:{PASSWORD}@db.example/goldrl"),
    ("GOLDRL_DATABASE_URL", f"postgresql://goldrl:{PASSWORD}@db.example:99999/goldrl"),
    ("GOLDRL_DATABASE_URL", f"postgresql://goldrl:{PASSWORD}@/goldrl"),
    ("GOLDRL_SCHEMA", "bad schema;"),
    ("GOLDRL_SCHEMA", "Goldrl"),
    ("GOLDRL_SCHEMA", "pg_goldrl"),
    ("GOLDRL_SCHEMA", "x" * 60),
    ("GOLDRL_HOME", "{file}"),
    ("GOLDRL_ARTIFACT_ROOT", "{file}"),
    ("GOLDRL_BINGX_BASE_URL", "ftp://open-api.bingx.com"),
    ("GOLDRL_BINGX_BASE_URL", "https://"),
    ("GOLDRL_BINGX_WS_URL", "https://open-api-swap.bingx.com"),
    ("GOLDRL_INSTRUMENTS", "NOPE-USDT"),
    ("GOLDRL_INSTRUMENTS", "XAUT-USDT,BTC-USDT"),
    ("GOLDRL_INSTRUMENTS", ",,"),
    ("GOLDRL_MARKET_START", "2025-13-01"),
    ("GOLDRL_MARKET_START", "yesterday"),
    ("GOLDRL_MARKET_START", "1999-01-01"),
    ("GOLDRL_MARKET_START", "9999-01-01"),
    ("GOLDRL_VENUE_CLOSURES", "{missing}"),
    ("GOLDRL_VENUE_CLOSURES", "{bad_closures}"),
    ("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "nan"),
    ("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "inf"),
    ("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "1e308"),
    ("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "-5"),
    ("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "two hours"),
    ("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", "-inf"),
    ("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", "0"),
    ("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", "60"),  # below the 120-minute warn default
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": 1e308}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": 1e999}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": NaN}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": Infinity}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": -0.05}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": "0.05"}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"1m": true}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"2m": 0.05}'),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", "[0.05]"),
    ("GOLDRL_RETURN_OUTLIER_THRESHOLDS", "{1m: 0.05"),
    ("GOLDRL_LEARNING_WINDOW_DAYS", "1e308"),
    ("GOLDRL_LEARNING_WINDOW_DAYS", "0"),
    ("GOLDRL_LEARNING_WINDOW_DAYS", "nan"),
    ("GOLDRL_LEARNING_TIMESTEPS", "-1"),
    ("GOLDRL_LEARNING_TIMESTEPS", "inf"),
    ("GOLDRL_LEARNING_TIMESTEPS", "99999999999"),
    ("GOLDRL_LEARNING_FEATURE_SETS", ", ,"),
    ("GOLDRL_LEARNING_REWARDS", "pnl; DROP TABLE"),
]
IDS = [f"{name}={value[:24]}" for name, value in BAD]


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No GOLDRL_* from the caller's environment; a throwaway GOLDRL_HOME."""
    for name in list(os.environ):
        if name.startswith("GOLDRL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GOLDRL_HOME", str(tmp_path / "home"))
    return tmp_path


def _set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str) -> str:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    bad_closures = tmp_path / "closures.yaml"
    bad_closures.write_text("weekly:\n  - weekday: funday\n    start: '21:00'\n")
    for key, path in {
        "{file}": a_file,
        "{missing}": tmp_path / "missing.yaml",
        "{bad_closures}": bad_closures,
    }.items():
        value = value.replace(key, str(path))
    monkeypatch.setenv(name, value)
    return value


@pytest.mark.parametrize(("name", "value"), BAD, ids=IDS)
def test_load_settings_names_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _set(monkeypatch, clean_env, name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message
    assert "\n" not in message
    assert PASSWORD not in message


@pytest.mark.parametrize(("name", "value"), BAD, ids=IDS)
def test_cli_prints_one_error_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _set(monkeypatch, clean_env, name, value)
    result = CliRunner().invoke(app, ["db", "url"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert name in lines[0]
    assert "Traceback" not in result.output
    assert PASSWORD not in result.output


def test_defaults_and_good_values_load(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().freshness_warn_minutes == 120.0
    closures = clean_env / "closures.yaml"
    closures.write_text(
        "weekly:\n  - weekday: friday\n    start: '21:00'\n    duration_minutes: 60\n"
    )
    monkeypatch.setenv("GOLDRL_DATABASE_URL", f"postgresql://goldrl:{PASSWORD}@db:5432/goldrl")
    monkeypatch.setenv("GOLDRL_SCHEMA", "goldrl_ci")
    monkeypatch.setenv("GOLDRL_INSTRUMENTS", "paxgusdt, Gold-USDT")
    monkeypatch.setenv("GOLDRL_MARKET_START", "2025-02-03")
    monkeypatch.setenv("GOLDRL_VENUE_CLOSURES", str(closures))
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", "14400")
    monkeypatch.setenv("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", "28800")
    monkeypatch.setenv("GOLDRL_RETURN_OUTLIER_THRESHOLDS", '{"5m": 0.08, "1m": 0.05}')
    monkeypatch.setenv("GOLDRL_LEARNING_WINDOW_DAYS", "14")
    monkeypatch.setenv("GOLDRL_LEARNING_TIMESTEPS", "4096")
    settings = load_settings()
    assert settings.schema == "goldrl_ci"
    assert settings.instruments == ("PAXG-USDT", "XAUT-USDT")
    assert settings.venue_closures == closures.resolve()
    assert settings.freshness_error_minutes == 28800.0
    assert settings.return_outlier_thresholds == (("1m", 0.05), ("5m", 0.08))
    assert (settings.learning_window_days, settings.learning_timesteps) == (14, 4096)
    hash(settings)  # open_runtime caches on it


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss/w@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("postgresql://h/db?user=u&password=pw", "postgresql://h/db?user=u&password=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_goldrl_command_has_no_traceback(clean_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDRL_")}
    env |= {
        "GOLDRL_HOME": str(clean_env / "home"),
        "GOLDRL_DATABASE_URL": f"postgres://goldrl:{PASSWORD}@db.example:notaport/goldrl",
    }
    script = "from goldrl_dagster.cli import app; app(prog_name='goldrl')"
    done = subprocess.run(
        [sys.executable, "-c", script, "db", "url"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: GOLDRL_DATABASE_URL=")
    assert len(done.stderr.strip().splitlines()) == 1
    assert PASSWORD not in done.stderr
