"""Process-wide settings read from the environment.

Every operator-facing knob is an environment variable with a safe embedded default, so the same
code runs on a laptop (embedded PostgreSQL, local artifact folder, local simulator) and in a
deployment (managed PostgreSQL, object storage, the real BingX API).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".goldrl"
DEFAULT_BINGX_BASE_URL = "https://open-api.bingx.com"
DEFAULT_BINGX_WS_URL = "wss://open-api-swap.bingx.com/swap-market"


class ConfigError(ValueError):
    """Raised when an environment variable or setting holds an unusable value."""


@dataclass(frozen=True)
class Settings:
    """Resolved goldrl settings.

    Attributes:
        home: Folder for goldrl's local state (embedded PostgreSQL data, artifacts, Dagster home).
        database_url: External PostgreSQL URL, or None to use the embedded server.
        artifact_root: Folder of the content-addressed artifact store.
        bingx_base_url: REST base URL of BingX (or of the local simulator).
        bingx_ws_url: WebSocket market-stream URL of BingX (or of the local simulator).
    """

    home: Path
    database_url: str | None
    artifact_root: Path
    bingx_base_url: str
    bingx_ws_url: str

    @property
    def dagster_home(self) -> Path:
        """Folder holding the Dagster instance configuration (dagster.yaml)."""
        return self.home / "dagster"

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL server."""
        return self.home / "pgdata"


def _url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip()
    if not value.startswith(schemes):
        raise ConfigError(f"{name}={value!r} must start with one of {', '.join(schemes)}")
    return value.rstrip("/")


def load_settings() -> Settings:
    """Read settings from the environment.

    Returns:
        The resolved settings; paths are absolute.

    Raises:
        ConfigError: If a variable holds a value goldrl cannot use.
    """
    home = Path(os.environ.get("GOLDRL_HOME", DEFAULT_HOME)).expanduser().resolve()
    database_url = os.environ.get("GOLDRL_DATABASE_URL") or None
    if database_url is not None and not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "GOLDRL_DATABASE_URL must be a postgresql:// URL "
            f"(got {database_url.split('@')[-1]!r}); unset it to use the embedded server"
        )
    artifact_root = (
        Path(os.environ.get("GOLDRL_ARTIFACT_ROOT", str(home / "artifacts"))).expanduser().resolve()
    )
    return Settings(
        home=home,
        database_url=database_url,
        artifact_root=artifact_root,
        bingx_base_url=_url(
            "GOLDRL_BINGX_BASE_URL", DEFAULT_BINGX_BASE_URL, ("http://", "https://")
        ),
        bingx_ws_url=_url("GOLDRL_BINGX_WS_URL", DEFAULT_BINGX_WS_URL, ("ws://", "wss://")),
    )
