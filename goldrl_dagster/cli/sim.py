"""``goldrl sim``: the local BingX simulator (REST + WebSocket) on loopback."""

from __future__ import annotations

from typing import Annotated

import typer


def sim(
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port on 127.0.0.1.")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the simulated price process.")] = 7,
    speed: Annotated[
        float, typer.Option(min=0.001, help="Simulated seconds per real second (60 = 1 bar/s).")
    ] = 1.0,
    balance: Annotated[
        float, typer.Option(min=0.0, help="USDT balance of the simulated trading account.")
    ] = 10_000.0,
    one_way: Annotated[
        bool,
        typer.Option(
            "--one-way", help="Open the trading account in one-way mode (BingX's default: hedge)."
        ),
    ] = False,
) -> None:
    """Serve the local BingX simulator (REST + WebSocket, BingX's wire protocol) on loopback.

    When GOLDRL_BINGX_API_KEY and GOLDRL_BINGX_API_SECRET (or their _FILE variants) are set, the
    simulator also opens a trading account for them, so the signed client and the account stream
    can be used against it.
    """
    from goldrl_dagster.lib.bingx.credentials import Credentials, CredentialsError
    from goldrl_dagster.lib.bingx.simulator.server import serve

    try:
        account = Credentials.from_env()
    except CredentialsError as exc:
        account = None
        typer.echo(f"no simulated trading account: {exc}")
    typer.echo(
        f"BingX simulator (SIMULATED data) on http://127.0.0.1:{port} and "
        f"ws://127.0.0.1:{port}/swap-market; point GOLDRL_BINGX_BASE_URL and "
        "GOLDRL_BINGX_WS_URL at it"
    )
    serve(
        "127.0.0.1",
        port,
        seed=seed,
        speed=speed,
        account=account,
        balance=str(balance),
        hedge_mode=not one_way,
    )
