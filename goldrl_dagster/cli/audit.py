"""``goldrl audit``: check and read the append-only, hash-chained audit log."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from goldrl_dagster.cli.common import command_group

audit_app = command_group(
    "The audit log: who promoted, rolled out, changed limits or resumed trading, and why."
)


@audit_app.command("verify")
def verify() -> None:
    """Re-hash every entry and check the chain: exit 0 when intact, 1 naming the first break."""
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.audit_log import verify_audit_chain

    result = verify_audit_chain(open_runtime().db)
    if not result.ok:
        typer.echo(result.summary(), err=True)
        raise typer.Exit(1)
    typer.echo(result.summary())


def _compact(value: Any, width: int) -> str:
    text = "-" if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if width <= 0 or len(text) <= width else text[: width - 1] + "…"


@audit_app.command("show")
def show(
    limit: Annotated[int, typer.Option(min=1, help="How many entries, newest first.")] = 20,
    action: Annotated[
        str | None, typer.Option(help="Only actions starting with this, e.g. rollout.")
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Print before/after untruncated.")] = False,
) -> None:
    """Print the newest entries: when, what, about what, by whom, why, before → after."""
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.audit_log import recent_audit

    entries = recent_audit(open_runtime().db, limit, action)
    if not entries:
        typer.echo("no audit entries")
        return
    width = 0 if full else 160
    for entry in entries:
        typer.echo(
            f"#{entry.entry_id} {entry.at:%Y-%m-%d %H:%M:%S%z} {entry.action} "
            f"[{entry.subject or '-'}] by {entry.actor}: {entry.reason or '-'}"
        )
        typer.echo(f"    before {_compact(entry.before, width)}")
        typer.echo(f"    after  {_compact(entry.after, width)}")
