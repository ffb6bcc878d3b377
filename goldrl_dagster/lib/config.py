"""Process-wide settings read from the environment.

Every operator-facing knob is an environment variable with a safe embedded default, so the same
code runs on a laptop (embedded PostgreSQL, local artifact folder, local simulator) and in a
deployment (managed PostgreSQL, object storage, the real BingX API).

:func:`load_settings` reads and validates every ``GOLDRL_*`` setting at once. A malformed value
raises :class:`SettingsError` whose one-line message names the variable, the value (URLs with
their password redacted) and what is accepted; numbers must be finite and in range. Modules
never read these variables from ``os.environ`` themselves: they call :func:`load_settings`
(``lib/market/universe.py``, ``lib/market/closures.py``, ``lib/storage/server.py``,
``expectations/outliers.py``, the Dagster resources and checks).

Read here: ``GOLDRL_HOME``, ``GOLDRL_DATABASE_URL``, ``GOLDRL_ARTIFACT_ROOT``,
``GOLDRL_BINGX_BASE_URL``, ``GOLDRL_BINGX_WS_URL``, ``GOLDRL_SCHEMA``, ``GOLDRL_INSTRUMENTS``,
``GOLDRL_MARKET_START``, ``GOLDRL_VENUE_CLOSURES``, ``GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES``,
``GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES``, ``GOLDRL_RETURN_OUTLIER_THRESHOLDS``,
``GOLDRL_LEARNING_WINDOW_DAYS``, ``GOLDRL_LEARNING_FEATURE_SETS``, ``GOLDRL_LEARNING_REWARDS``,
``GOLDRL_LEARNING_TIMESTEPS``, ``GOLDRL_LEARNING_GAP_POLICY``,
``GOLDRL_LEARNING_RULES_BEFORE_LISTING``, ``GOLDRL_ALERT_WEBHOOK_URL``,
``GOLDRL_ARTIFACT_STORAGE_OPTIONS``, ``GOLDRL_EXECUTOR``, ``GOLDRL_CELERY_BROKER_URL``.

Read elsewhere on purpose: the trading credentials ``GOLDRL_BINGX_API_KEY`` /
``GOLDRL_BINGX_API_SECRET`` (or their ``_FILE`` variants) only by
``lib/bingx/credentials.py``, so the secret never sits in a settings object; ``GOLDRL_LOG_FORMAT``
is the live engine's ``--log-format`` option. ``GOLDRL_PG_*`` are written (``Runtime.dbt_env``)
for dbt's profile, never read by goldrl; ``GOLDRL_TEST_DATABASE_URL`` is the test suite's.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

DEFAULT_HOME = ".goldrl"
DEFAULT_BINGX_BASE_URL = "https://open-api.bingx.com"
DEFAULT_BINGX_WS_URL = "wss://open-api-swap.bingx.com/swap-market"
DEFAULT_SCHEMA = "goldrl"
DEFAULT_MARKET_START = date(2025, 1, 1)
DEFAULT_FRESHNESS_WARN_MINUTES = 120.0
DEFAULT_FRESHNESS_ERROR_MINUTES = 1560.0
DEFAULT_LEARNING_WINDOW_DAYS = 30
DEFAULT_LEARNING_FEATURE_SETS: tuple[str, ...] = ("ta-v2",)
DEFAULT_LEARNING_REWARDS: tuple[str, ...] = ("equity_change_after_costs", "turnover_penalised")
# Step executors of the Dagster runs: "multiprocess" (Dagster's default, one machine) or "celery"
# (steps queued on a broker, run by dagster-celery workers on any host).
EXECUTORS: tuple[str, ...] = ("multiprocess", "celery")
DEFAULT_EXECUTOR = "multiprocess"
DEFAULT_CELERY_BROKER_URL = "amqp://guest@127.0.0.1:5672//"

# Freshness thresholds: at most a year; |log return| outlier thresholds: at most 5 (a x148 move).
MAX_FRESHNESS_MINUTES = 366 * 24 * 60
MAX_RETURN_OUTLIER_THRESHOLD = 5.0
MAX_LEARNING_TIMESTEPS = 1_000_000_000
LEARNING_WINDOW_DAYS_RANGE = (2, 3660)
# dbt and Dagster append ``_analytics`` / ``_dagster``; PostgreSQL names hold 63 bytes.
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,52}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:\-]+$")
_INTERVALS = (
    "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w",
)  # fmt: skip
_MAX_SHOWN = 80


class SettingsError(ValueError):
    """A ``GOLDRL_*`` environment variable holds an unusable value.

    The message is one line naming the variable, the (redacted) value and what is accepted.
    """


# Older name, still imported by callers.
ConfigError = SettingsError


@dataclass(frozen=True)
class Settings:
    """Resolved goldrl settings.

    Attributes:
        home: Folder for goldrl's local state (embedded PostgreSQL data, artifacts, Dagster home).
        database_url: External PostgreSQL URL, or None to use the embedded server.
        artifact_root: Root of the content-addressed artifact store: an absolute local folder,
            or an fsspec URL such as ``s3://bucket/prefix`` (``GOLDRL_ARTIFACT_ROOT``).
        bingx_base_url: REST base URL of BingX (or of the local simulator).
        bingx_ws_url: WebSocket market-stream URL of BingX (or of the local simulator).
        schema: PostgreSQL schema of goldrl's tables (``GOLDRL_SCHEMA``).
        instruments: Exchange symbols to ingest (``GOLDRL_INSTRUMENTS``).
        market_start: First day of the market-data partitions (``GOLDRL_MARKET_START``).
        venue_closures: Venue-closure file (``GOLDRL_VENUE_CLOSURES``), None for 24/7.
        freshness_warn_minutes: Candle age above which freshness warns.
        freshness_error_minutes: Candle age above which freshness errors.
        return_outlier_thresholds: Per-interval ``|log return|`` overrides, as sorted pairs.
        learning_window_days: Rolling window of the learning loop's cycles.
        learning_feature_sets: Feature-set references the learning loop trains.
        learning_rewards: Rewards the learning loop trains.
        learning_timesteps: PPO steps per candidate (0: the training default).
        learning_gap_policy: Gap policy of the learning loop's datasets
            (``GOLDRL_LEARNING_GAP_POLICY``): ``refuse``, ``segments`` or ``carry_forward:N``.
        learning_rules_before_listing: Contract rules of the learning loop's datasets before
            the listing (``GOLDRL_LEARNING_RULES_BEFORE_LISTING``): ``refuse``, ``earliest``
            or ``assumed:<rules id>`` (an id printed when rules were declared).
        alert_webhook_url: Webhook the SLO alerts are posted to (``GOLDRL_ALERT_WEBHOOK_URL``),
            or None to record alerts without posting. A secret: never in a repr or a message.
        executor: Step executor of Dagster runs (``GOLDRL_EXECUTOR``): ``multiprocess`` or
            ``celery``.
        celery_broker_url: Broker of the Celery executor (``GOLDRL_CELERY_BROKER_URL``). May
            hold a password: never in a repr; show it with :func:`redact_url`.
        artifact_storage_options_json: fsspec storage options of a remote artifact root as
            canonical JSON (``GOLDRL_ARTIFACT_STORAGE_OPTIONS``), or None. May hold keys:
            never in a repr or a message.
    """

    home: Path
    database_url: str | None
    artifact_root: str
    bingx_base_url: str
    bingx_ws_url: str
    schema: str = DEFAULT_SCHEMA
    instruments: tuple[str, ...] = ("XAUT-USDT", "PAXG-USDT")
    market_start: date = DEFAULT_MARKET_START
    venue_closures: Path | None = None
    freshness_warn_minutes: float = DEFAULT_FRESHNESS_WARN_MINUTES
    freshness_error_minutes: float = DEFAULT_FRESHNESS_ERROR_MINUTES
    return_outlier_thresholds: tuple[tuple[str, float], ...] = ()
    learning_window_days: int = DEFAULT_LEARNING_WINDOW_DAYS
    learning_feature_sets: tuple[str, ...] = DEFAULT_LEARNING_FEATURE_SETS
    learning_rewards: tuple[str, ...] = DEFAULT_LEARNING_REWARDS
    learning_timesteps: int = 0
    learning_gap_policy: str = "refuse"
    learning_rules_before_listing: str = "refuse"
    alert_webhook_url: str | None = field(default=None, repr=False)
    artifact_storage_options_json: str | None = field(default=None, repr=False)
    executor: str = DEFAULT_EXECUTOR
    celery_broker_url: str = field(default=DEFAULT_CELERY_BROKER_URL, repr=False)

    @property
    def artifact_storage_options(self) -> dict[str, Any]:
        """The fsspec storage options of the artifact root (empty when unset)."""
        return json.loads(self.artifact_storage_options_json or "{}")

    @property
    def dagster_home(self) -> Path:
        """Folder holding the Dagster instance configuration (dagster.yaml)."""
        return self.home / "dagster"

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL server."""
        return self.home / "pgdata"


def redact_url(url: str) -> str:
    """Return ``url`` with any password in its user-info (or ``password=`` query) masked."""
    text = re.sub(r"(?i)(password=)[^&#\s]*", r"\1***", url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    # User-info ends at the last "@" before the query: a password may hold "@" or "/".
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0 or ":" not in head[:at]:
        return text
    return f"{scheme}{sep}{head[:at].split(':', 1)[0]}:***{rest[at:]}"


def _shown(value: str, *, url: bool = False) -> str:
    text = redact_url(value) if url else value
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    return repr(text)


def _fail(name: str, value: str, accepted: str, *, url: bool = False) -> SettingsError:
    return SettingsError(f"{name}={_shown(value, url=url)} is not valid: {accepted}")


# The environment load_settings reads: the process's, or a mapping a caller passed in.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("goldrl_environ", default=None)


def _env() -> Mapping[str, str]:
    environ = _ENVIRON.get()
    return os.environ if environ is None else environ


def _raw(name: str) -> str | None:
    """The variable's value stripped, or None when unset or blank."""
    value = _env().get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _split_url(name: str, value: str, accepted: str) -> SplitResult:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _fail(name, value, accepted, url=True) from None
    return parts


def _url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _raw(name) or default
    accepted = f"a {' or '.join(s + '://' for s in schemes)} URL with a host, e.g. {default}"
    parts = _split_url(name, value, accepted)
    if parts.scheme.lower() not in schemes or not parts.hostname or any(c.isspace() for c in value):
        raise _fail(name, value, accepted, url=True)
    return value.rstrip("/")


def _database_url() -> str | None:
    name = "GOLDRL_DATABASE_URL"
    value = _raw(name)
    if value is None:
        return None
    accepted = (
        "a postgresql://user:password@host:port/dbname URL; unset it to use the embedded server"
    )
    parts = _split_url(name, value, accepted)
    if parts.scheme.lower() not in ("postgresql", "postgres") or any(c.isspace() for c in value):
        raise _fail(name, value, accepted, url=True)
    if not parts.hostname and "host=" not in parts.query:
        raise _fail(name, value, accepted, url=True)
    return value


def _folder(name: str, default: Path) -> Path:
    value = _raw(name)
    if value is None:
        path = default
    else:
        try:
            path = Path(value).expanduser().resolve()
        except (ValueError, RuntimeError, OSError):
            raise _fail(name, value, "a folder path") from None
    if path.exists() and not path.is_dir():
        raise _fail(name, str(path), "a folder (or a path to create), not a file")
    return path


def _schema() -> str:
    name = "GOLDRL_SCHEMA"
    value = _env().get(name, DEFAULT_SCHEMA)
    if not _SCHEMA_RE.match(value) or value.startswith("pg_"):
        raise _fail(
            name,
            value,
            "a lower-case identifier of at most 53 characters (letters, digits, _; "
            "not starting with a digit or pg_), e.g. 'goldrl'",
        )
    return value


def _instruments() -> tuple[str, ...]:
    from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS
    from goldrl_dagster.lib.market.universe import INSTRUMENTS_ENV, parse_instruments

    value = _raw(INSTRUMENTS_ENV)
    if value is None:
        return GOLD_SYMBOLS
    try:
        return parse_instruments(value)
    except ValueError:
        raise _fail(
            INSTRUMENTS_ENV,
            value,
            f"a comma-separated list of {', '.join(GOLD_SYMBOLS)} "
            "(aliases such as Gold-USDT or PAXGUSDT work); unset it for all",
        ) from None


def _market_start() -> date:
    name = "GOLDRL_MARKET_START"
    value = _raw(name)
    if value is None:
        return DEFAULT_MARKET_START
    today = datetime.now(UTC).date()
    accepted = f"a YYYY-MM-DD date between 2010-01-01 and today ({today.isoformat()})"
    try:
        if len(value) != 10:
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        raise _fail(name, value, accepted) from None
    if not date(2010, 1, 1) <= day <= today:
        raise _fail(name, value, accepted)
    return day


def _venue_closures() -> Path | None:
    from goldrl_dagster.lib.market.closures import CLOSURES_ENV, load_closures

    value = _raw(CLOSURES_ENV)
    if value is None:
        return None
    try:
        path = Path(value).expanduser().resolve()
    except (ValueError, RuntimeError, OSError):
        raise _fail(CLOSURES_ENV, value, "a path to a YAML or JSON closure file") from None
    if not path.is_file():
        raise _fail(CLOSURES_ENV, value, "an existing YAML or JSON closure file; unset it for 24/7")
    try:
        load_closures(path)
    except ValueError as exc:
        detail = " ".join(str(exc).split())
        raise SettingsError(
            f"{CLOSURES_ENV}={_shown(value)} is not a valid closure file: {detail}"
        ) from None
    return path


def finite_number(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_inclusive: bool = False,
    unit: str = "",
) -> float:
    """Parse a finite number within ``(low, high]`` (``[low, high]`` with ``low_inclusive``).

    Args:
        name: What the number is, for the message (usually the variable name).
        value: A string from the environment, or a number from parsed JSON.
        low: Lower bound.
        high: Upper bound (inclusive).
        low_inclusive: Whether ``low`` itself is accepted.
        unit: Unit shown in the message, e.g. ``minutes``.

    Raises:
        SettingsError: If the value is not a number, not finite, or out of range.
    """
    opening = "[" if low_inclusive else "("
    accepted = f"a finite number in {opening}{low:g}, {high:g}]" + (f" {unit}" if unit else "")
    shown = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(name, str(shown), accepted)
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise _fail(name, str(shown), accepted) from None
    in_range = (low <= number if low_inclusive else low < number) and number <= high
    if not math.isfinite(number) or not in_range:
        raise _fail(name, str(shown), accepted)
    return number


def _minutes(name: str, default: float) -> float:
    value = _raw(name)
    if value is None:
        return default
    return finite_number(name, value, low=0.0, high=MAX_FRESHNESS_MINUTES, unit="minutes")


def _whole(name: str, default: int, low: int, high: int) -> int:
    value = _raw(name)
    if value is None:
        return default
    if not re.fullmatch(r"[+]?\d{1,12}", value) or not low <= int(value) <= high:
        raise _fail(name, value, f"a whole number in [{low}, {high}]")
    return int(value)


def _return_outlier_thresholds() -> tuple[tuple[str, float], ...]:
    name = "GOLDRL_RETURN_OUTLIER_THRESHOLDS"
    value = _raw(name)
    if value is None:
        return ()
    accepted = 'a JSON object of interval to |log return| threshold, e.g. {"1m": 0.05, "5m": 0.08}'

    def refuse(constant: str) -> float:
        raise _fail(name, value, f"{accepted} ({constant} is not a finite number)")

    try:
        document = json.loads(value, parse_constant=refuse)
    except json.JSONDecodeError:
        raise _fail(name, value, accepted) from None
    if not isinstance(document, dict) or not document:
        raise _fail(name, value, accepted)
    out: dict[str, float] = {}
    for interval, threshold in document.items():
        if interval not in _INTERVALS:
            raise _fail(name, value, f"{accepted}; unknown interval {interval!r}")
        if isinstance(threshold, str):
            raise _fail(name, value, f"{accepted}; thresholds are JSON numbers, not strings")
        out[interval] = finite_number(
            f"{name}[{interval}]", threshold, low=0.0, high=MAX_RETURN_OUTLIER_THRESHOLD
        )
    return tuple(sorted(out.items()))


def _names(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = _raw(name)
    if value is None:
        return default
    items = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not items or not all(_NAME_RE.match(item) for item in items):
        raise _fail(name, value, f"a comma-separated list of names, e.g. {','.join(default)}")
    return items


def _learning_gap_policy() -> str:
    name = "GOLDRL_LEARNING_GAP_POLICY"
    value = _raw(name)
    if value is None:
        return "refuse"
    # Imported here: the datasets package reads these settings itself (no import cycle).
    from goldrl_dagster.lib.datasets.gap_policy import MAX_CARRY_BARS, GapPolicy

    try:
        return GapPolicy.parse(value).spelling
    except ValueError as exc:
        raise _fail(
            name, value, f"refuse, segments or carry_forward:N (N bars, 1..{MAX_CARRY_BARS})"
        ) from exc


def _learning_rules_before_listing() -> str:
    name = "GOLDRL_LEARNING_RULES_BEFORE_LISTING"
    value = _raw(name)
    if value is None:
        return "refuse"
    from goldrl_dagster.lib.datasets.contract_rules import parse_rules_policy

    try:
        return parse_rules_policy(value)
    except ValueError as exc:
        raise _fail(
            name,
            value,
            "refuse, earliest or assumed:<16 hex digits> (the id `goldrl dataset build "
            "--rules-before-listing RULES.json` printed)",
        ) from exc


def _webhook_url() -> str | None:
    """``GOLDRL_ALERT_WEBHOOK_URL``: an http(s) URL with a host; its path is a secret."""
    name = "GOLDRL_ALERT_WEBHOOK_URL"
    value = _raw(name)
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
        valid = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid or any(c.isspace() for c in value):
        # Never echo the value: a webhook URL carries its token (Slack, Telegram).
        raise SettingsError(
            f"{name} is not valid: an http:// or https:// URL with a host, e.g. "
            "https://hooks.slack.com/services/…; unset it to record alerts without posting"
        )
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every ``GOLDRL_*`` setting from the environment.

    Every module reads its ``GOLDRL_*`` variables through this function, never from
    ``os.environ`` directly, so each value is validated the same way everywhere.

    Args:
        environ: Variables to read instead of the process environment (tests, dry runs).

    Returns:
        The resolved settings; paths are absolute.

    Raises:
        SettingsError: If a variable holds a value goldrl cannot use; the message names it.
    """
    token = _ENVIRON.set(environ)
    try:
        return _load()
    finally:
        _ENVIRON.reset(token)


def _artifact_root(home: Path) -> str:
    """``GOLDRL_ARTIFACT_ROOT``: a local folder, a file:// URI, or an fsspec URL with a location."""
    name = "GOLDRL_ARTIFACT_ROOT"
    value = _raw(name)
    from goldrl_dagster.lib.storage.artifacts import path_from_file_uri, url_scheme

    scheme = None if value is None else url_scheme(value)
    if value is None or scheme is None:
        return str(_folder(name, home / "artifacts"))
    accepted = "a folder path, or an fsspec URL with a location, e.g. s3://bucket/prefix"
    if scheme == "file":
        try:
            path = path_from_file_uri(value)
        except ValueError:
            raise _fail(name, value, accepted, url=True) from None
        if path.exists() and not path.is_dir():
            raise _fail(name, value, "a folder (or a path to create), not a file", url=True)
        return str(path)
    from fsspec.registry import known_implementations, registry

    location = value.split("://", 1)[1].strip("/")
    if scheme not in known_implementations and scheme not in registry:
        raise _fail(name, value, f"{accepted} ({scheme}:// is not an fsspec protocol)", url=True)
    if not location or any(c.isspace() for c in value):
        raise _fail(name, value, accepted, url=True)
    return value.rstrip("/")


def _storage_options() -> str | None:
    """``GOLDRL_ARTIFACT_STORAGE_OPTIONS``: a JSON object; may hold keys, so never echoed."""
    name = "GOLDRL_ARTIFACT_STORAGE_OPTIONS"
    value = _raw(name)
    if value is None:
        return None
    try:
        document = json.loads(value)
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise SettingsError(
            f"{name} is not valid: a JSON object of fsspec storage options, e.g. "
            '{"endpoint_url": "http://127.0.0.1:9000", "key": "…", "secret": "…"}'
        )
    return json.dumps(document, sort_keys=True)


def _executor() -> str:
    """``GOLDRL_EXECUTOR``: ``multiprocess`` (the default) or ``celery``."""
    value = _raw("GOLDRL_EXECUTOR")
    if value is None:
        return DEFAULT_EXECUTOR
    if value.lower() not in EXECUTORS:
        raise _fail("GOLDRL_EXECUTOR", value, f"one of {', '.join(EXECUTORS)}")
    return value.lower()


def _load() -> Settings:
    home = _folder("GOLDRL_HOME", Path(DEFAULT_HOME).expanduser().resolve())
    warn = _minutes("GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES", DEFAULT_FRESHNESS_WARN_MINUTES)
    error = _minutes("GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES", DEFAULT_FRESHNESS_ERROR_MINUTES)
    if warn > error:
        raise SettingsError(
            f"GOLDRL_CANDLES_FRESHNESS_WARN_MINUTES={warn:g} is not valid: it must not exceed "
            f"GOLDRL_CANDLES_FRESHNESS_ERROR_MINUTES={error:g}"
        )
    return Settings(
        home=home,
        database_url=_database_url(),
        artifact_root=_artifact_root(home),
        bingx_base_url=_url("GOLDRL_BINGX_BASE_URL", DEFAULT_BINGX_BASE_URL, ("http", "https")),
        bingx_ws_url=_url("GOLDRL_BINGX_WS_URL", DEFAULT_BINGX_WS_URL, ("ws", "wss")),
        schema=_schema(),
        instruments=_instruments(),
        market_start=_market_start(),
        venue_closures=_venue_closures(),
        freshness_warn_minutes=warn,
        freshness_error_minutes=error,
        return_outlier_thresholds=_return_outlier_thresholds(),
        learning_window_days=_whole(
            "GOLDRL_LEARNING_WINDOW_DAYS", DEFAULT_LEARNING_WINDOW_DAYS, *LEARNING_WINDOW_DAYS_RANGE
        ),
        learning_feature_sets=_names("GOLDRL_LEARNING_FEATURE_SETS", DEFAULT_LEARNING_FEATURE_SETS),
        learning_rewards=_names("GOLDRL_LEARNING_REWARDS", DEFAULT_LEARNING_REWARDS),
        learning_timesteps=_whole("GOLDRL_LEARNING_TIMESTEPS", 0, 0, MAX_LEARNING_TIMESTEPS),
        learning_gap_policy=_learning_gap_policy(),
        learning_rules_before_listing=_learning_rules_before_listing(),
        alert_webhook_url=_webhook_url(),
        artifact_storage_options_json=_storage_options(),
        executor=_executor(),
        celery_broker_url=_url(
            "GOLDRL_CELERY_BROKER_URL",
            DEFAULT_CELERY_BROKER_URL,
            ("amqp", "amqps", "pyamqp", "redis", "rediss"),
        ),
    )
