"""The API key and secret never appear in anything a trading session writes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from decimal import Decimal

from stream_helpers import run

from goldrl_dagster.lib.bingx.account_stream import AccountStream, AccountStreamGap
from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.errors import BingXError
from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.bingx.trading import BingXTradingClient

API_KEY = "GoldrlTestKey7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e"
SECRET = "GoldrlTestSecret2b4d6f8a0c1e3a5c7e9b1d3f5a7c9e0b"
XAUT = "XAUT-USDT"


def session(sim, client: BingXTradingClient) -> list[str]:
    """Trade, fail, lose answers and stream; return every error's text and traceback."""
    texts: list[str] = []

    def attempt(call, *args, **kwargs) -> None:
        try:
            texts.append(repr(call(*args, **kwargs)))
        except (BingXError, ValueError) as exc:
            texts.append("".join(traceback.format_exception(exc)))
            texts.append(repr(exc))

    attempt(client.place_order, OrderRequest(XAUT, "BUY", Decimal("0.01"), "hedge-refused"))
    client.set_position_mode(hedge=False)
    order = client.place_order(OrderRequest(XAUT, "BUY", Decimal("0.5"), "secret-test-1"))
    attempt(client.query_order, XAUT, order_id=order.order_id)
    attempt(client.cancel_order, XAUT, order_id=order.order_id)  # not found: filled
    attempt(client.place_order, OrderRequest(XAUT, "BUY", Decimal("1000"), "too-big"))
    sim.lose_next_order_responses(1, seconds=1.5)
    attempt(client.place_order, OrderRequest(XAUT, "BUY", Decimal("0.01"), "lost"))
    sim.inject_rest_faults(500, 502)
    attempt(client.positions)
    attempt(client.balance)
    attempt(client.funding_income)
    texts.append(repr(client))
    texts.append(repr(client.clock.sample))

    async def stream() -> None:
        account_stream = AccountStream(sim.ws_url, client, reconnect_backoff=(0.05, 0.1))
        items = []

        async def consume() -> None:
            async for item in account_stream.events():
                items.append(item)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(
            client.place_order,
            OrderRequest(XAUT, "SELL", Decimal("0.5"), "secret-test-2", reduce_only=True),
        )
        sim.push_account_event(API_KEY, {"e": "ORDER_TRADE_UPDATE", "E": 1, "o": {}})
        sim.drop_connections()
        for _ in range(100):
            if any(isinstance(i, AccountStreamGap) for i in items):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        texts.extend(repr(i) for i in items)
        texts.append(repr(account_stream.__dict__))

    run(stream())
    return texts


def test_no_secret_in_logs_errors_reprs_or_output(start_sim, caplog, capfd, monkeypatch):
    monkeypatch.setenv("GOLDRL_BINGX_API_KEY", API_KEY)
    monkeypatch.setenv("GOLDRL_BINGX_API_SECRET", SECRET)
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx, httpcore, websockets, uvicorn
    sim = start_sim()
    sim.create_account(API_KEY, SECRET)
    created: list[str] = []
    create_key = sim.exchange.create_listen_key
    monkeypatch.setattr(
        sim.exchange, "create_listen_key", lambda *a: created.append(create_key(*a)) or created[-1]
    )
    credentials = Credentials.from_env()
    with BingXTradingClient(sim.base_url, credentials, timeout=0.5, sleep=lambda _: None) as client:
        texts = session(sim, client)
    out, err = capfd.readouterr()
    written = "\n".join([caplog.text, *texts, out, err])
    assert "secret-test-2" in written and "BingX error 80012" in written  # the session ran
    assert len(caplog.records) > 20
    for secret in (API_KEY, SECRET):
        assert secret not in written
        assert secret.lower() not in written.lower()
    # The listen key grants read access to the account: goldrl's own logs and errors never
    # show it (library debug logs of request lines may).
    assert len(created) >= 1
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("goldrl"))
    assert not any(key in ours or key in "\n".join(texts) for key in created)
