"""``goldrl backup`` and ``goldrl restore``: disaster recovery of the database and artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from goldrl_dagster.cli.common import fail


def backup(
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="New (or empty) folder for the backup; default "
            "$GOLDRL_HOME/backups/goldrl-backup-<UTC time> (copy it off this machine).",
        ),
    ] = None,
) -> None:
    """Back up goldrl's schemas (one consistent pg_dump) and every artifact, with a manifest.

    Exits 1 when an artifact could not be copied (missing or corrupted in the store): the
    backup is written and lists it.
    """
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.backup import BackupError, create_backup

    try:
        result = create_backup(open_runtime(), to, progress=typer.echo)
    except BackupError as exc:
        raise fail(str(exc), 1) from None
    typer.echo(
        f"database dump {result.dump_bytes:,} bytes, {len(result.manifest['artifacts'])} "
        f"artifact(s) {result.artifact_bytes:,} bytes"
    )
    if result.missing_artifacts:
        raise fail(
            f"{len(result.missing_artifacts)} artifact(s) could not be backed up (listed in the "
            "manifest as missing_artifacts): "
            + ", ".join(m["sha256"][:12] for m in result.missing_artifacts),
            1,
        )


def restore(
    directory: Annotated[
        Path, typer.Argument(help="The backup folder (holding manifest.json).", exists=True)
    ],
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Replace a database that already holds data (say what goes)."),
    ] = False,
) -> None:
    """Verify a backup, restore it into this GOLDRL_HOME's database and artifact store, check it.

    Exits 1 when the backup fails verification (naming each corrupted or missing file), when
    the database holds data and --yes was not given, or when what came back disagrees with the
    manifest.
    """
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.backup import BackupError, restore_backup

    try:
        summary = restore_backup(open_runtime(), directory, replace=yes, progress=typer.echo)
    except BackupError as exc:
        raise fail(str(exc), 1) from None
    for line in summary.lines():
        typer.echo(line)
    if not summary.ok:
        raise fail("the restored data disagrees with the backup's manifest (see above)", 1)
