"""``goldrl account``: check the BingX trading account goldrl would trade, read-only."""

from __future__ import annotations

from typing import Annotated

import typer


def account(
    symbol: Annotated[
        str, typer.Option(help="Symbol (or alias) whose leverage and margin type to show.")
    ] = "XAUT-USDT",
) -> None:
    """Show the trading account behind GOLDRL_BINGX_API_KEY: connectivity, clock, mode, money.

    Read-only: it places nothing. Exits with status 1 and one plain line when the credentials
    are missing or BingX refuses them, and with status 2 when the account is in hedge mode
    (goldrl trades one-way positions).
    """
    from goldrl_dagster.lib.bingx.credentials import Credentials, CredentialsError
    from goldrl_dagster.lib.bingx.errors import BingXError
    from goldrl_dagster.lib.bingx.trading import BingXTradingClient
    from goldrl_dagster.lib.config import ConfigError, load_settings

    try:
        settings = load_settings()
        credentials = Credentials.from_env()
    except (ConfigError, CredentialsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    with BingXTradingClient(settings.bingx_base_url, credentials) as client:
        try:
            offset = client.sync_clock()
            hedge = client.position_mode_is_hedge()
            balances = client.balance()
            positions = client.positions()
            orders = client.open_orders()
            fees = client.commission_rate()
            leverage = client.leverage(symbol)
            margin = client.margin_type(symbol)
        except (BingXError, ValueError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    where = "SIMULATOR" if client.simulated else "BingX"
    typer.echo(f"{where} {settings.bingx_base_url}, key {credentials.key_id}")
    typer.echo(f"clock offset: {offset:+d} ms (BingX minus local)")
    typer.echo(f"position mode: {'hedge' if hedge else 'one-way'}")
    typer.echo(f"fees: taker {fees.taker}, maker {fees.maker}")
    typer.echo(f"{leverage.symbol}: leverage {leverage.long}/{leverage.short}, margin {margin}")
    for balance in balances:
        typer.echo(
            f"balance {balance.asset}: {balance.balance} (equity {balance.equity}, "
            f"available margin {balance.available_margin})"
        )
    typer.echo(f"positions: {len(positions)}")
    for position in positions:
        typer.echo(
            f"  {position.symbol} {position.quantity:+} @ {position.entry_price} "
            f"(unrealised {position.unrealized_pnl})"
        )
    typer.echo(f"open orders: {len(orders)}")
    for order in orders:
        typer.echo(
            f"  {order.symbol} {order.side} {order.quantity} {order.type} @ {order.price} "
            f"{order.status} id {order.order_id} client {order.client_order_id}"
        )
    if hedge:
        typer.echo(
            "refusing: the account is in hedge mode; goldrl trades one-way (net) positions. "
            "Switch it to one-way in BingX's settings with no open positions or orders.",
            err=True,
        )
        raise typer.Exit(2)
