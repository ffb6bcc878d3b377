"""``goldrl risk``: show and store the versioned risk limits every order is checked against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from goldrl_dagster.cli.common import command_group

risk_app = command_group(
    "Risk limits: every order (paper and live) is checked against the latest version."
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@risk_app.command("show")
def show(
    version: Annotated[int, typer.Option(help="Version to show (0 = the latest).")] = 0,
) -> None:
    """Print a stored risk configuration as JSON (the latest unless --version is given)."""
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.risk_store import RiskConfigError, load_risk_config

    with open_runtime().db.connect() as conn:
        try:
            limits = load_risk_config(conn, version or None)
        except RiskConfigError as exc:
            _fail(f"{exc}; store one with `goldrl risk set FILE` (`goldrl risk template`)")
    typer.echo(json.dumps(limits.to_dict(), indent=2))


@risk_app.command("template")
def template() -> None:
    """Print the conservative defaults as a file to edit for `goldrl risk set`."""
    from goldrl_dagster.lib.risk import DEFAULT_LIMITS

    fields = DEFAULT_LIMITS.to_dict()
    del fields["version"]
    typer.echo(json.dumps(fields, indent=2))


@risk_app.command("set")
def set_limits(
    file: Annotated[
        Path, typer.Argument(help="JSON with every limit (see `goldrl risk template`).")
    ],
    by: Annotated[str, typer.Option("--by", help="Who stores these limits.")],
    reason: Annotated[str, typer.Option("--reason", help="Why they change.")],
) -> None:
    """Store the limits in FILE as the next version; running engines use it for new sessions."""
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.risk_store import store_new_risk_version

    try:
        fields = json.loads(file.read_text())
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        _fail(f"{file} is not JSON: {exc}")
    if not isinstance(fields, dict):
        _fail(f"{file} must hold a JSON object of limits")
    with open_runtime().db.connect() as conn:
        try:
            limits = store_new_risk_version(conn, fields, created_by=by, reason=reason)
        except ValueError as exc:  # RiskConfigError too
            _fail(str(exc))
    typer.echo(f"stored risk configuration version {limits.version} ({limits.fingerprint[:12]})")


@risk_app.command("resume")
def resume(
    account: Annotated[str, typer.Option(help="Trading account, e.g. paper:default.")],
    instrument: Annotated[str, typer.Option(help="Symbol, e.g. XAUT-USDT.")],
    by: Annotated[str, typer.Option("--by", help="Who resumes trading.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it is safe to trade again.")],
) -> None:
    """Lift a halt for the engine's next start (stop the engine first; the cooldown must be over).

    Recorded in risk_events with who and why. The engine judges the loss limits again on its
    first decision.
    """
    import time

    from goldrl_dagster.lib.bingx.symbols import resolve_symbol
    from goldrl_dagster.lib.runtime import open_runtime
    from goldrl_dagster.lib.storage.risk_store import resume_by_operator

    with open_runtime().db.connect() as conn:
        try:
            transition = resume_by_operator(
                conn, account, resolve_symbol(instrument), actor=by, reason=reason,
                now_ms=int(time.time() * 1000),
            )  # fmt: skip
        except (ValueError, LookupError) as exc:
            _fail(str(exc))
    typer.echo(f"{account} {instrument}: {transition.from_state.value} -> ACTIVE (recorded)")
