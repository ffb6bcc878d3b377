"""The simulator's account stream: ``/swap-market?listenKey=<key>``, as BingX serves it.

A connection with a live listen key receives every event of its account (``ORDER_TRADE_UPDATE``,
``ACCOUNT_UPDATE``, ``ACCOUNT_CONFIG_UPDATE``) as gzip-compressed JSON, without subscribing.
``Ping`` is sent every ``ping_interval`` seconds and a client that stops answering ``Pong`` is
dropped; when the key expires (or is deleted) a ``listenKeyExpired`` event is pushed and the
connection closed. Faults on demand (:class:`AccountPushFaults`): duplicated and dropped pushes.
"""

from __future__ import annotations

import asyncio
import json

from starlette.websockets import WebSocket

from goldrl_dagster.lib.bingx.simulator.exchange import SimAccount, SimExchange
from goldrl_dagster.lib.bingx.simulator.ws_peer import WsPeer

EXPIRY_CHECK_S = 0.2


class AccountPushFaults:
    """Pending faults on account pushes (touched only on the server's event loop).

    Attributes:
        duplicate: How many of the next pushes are sent twice.
        drop: How many of the next pushes are never sent.
    """

    def __init__(self) -> None:
        self.duplicate = 0
        self.drop = 0


class AccountConnection(WsPeer):
    """One account-stream client: pushes its account's events, watches its key's expiry.

    Args:
        websocket: The accepted WebSocket.
        exchange: The exchange whose events are pushed.
        account: The listen key's account.
        listen_key: The key (its expiry or deletion ends the stream).
        ping_interval: Seconds between ``Ping`` frames.
        faults: Push faults shared by every account connection of the server.
    """

    def __init__(
        self,
        websocket: WebSocket,
        exchange: SimExchange,
        account: SimAccount,
        listen_key: str,
        ping_interval: float,
        faults: AccountPushFaults,
    ) -> None:
        super().__init__(websocket, ping_interval)
        self.exchange = exchange
        self.account = account
        self.listen_key = listen_key
        self.faults = faults
        self._queue: asyncio.Queue[dict] = asyncio.Queue()

    async def run(self) -> None:
        """Serve until the client leaves, the key lapses or the server drops the connection."""
        loop = asyncio.get_running_loop()

        def listener(event: dict) -> None:
            loop.call_soon_threadsafe(self._queue.put_nowait, event)

        self.exchange.add_listener(self.account, listener)
        try:
            await self.serve(self._pusher(), self._expiry())
        finally:
            self.exchange.remove_listener(self.account, listener)

    async def _pusher(self) -> None:
        while True:
            event = await self._queue.get()
            if self.faults.drop > 0:
                self.faults.drop -= 1
                continue
            copies = 1
            if self.faults.duplicate > 0:
                self.faults.duplicate -= 1
                copies = 2
            text = json.dumps(event, separators=(",", ":"))
            for _ in range(copies):
                await self.send_text(text)

    async def _expiry(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            if self.exchange.listen_key_account(self.listen_key) is None:
                event = {
                    "e": "listenKeyExpired",
                    "E": self.exchange.now_ms(),
                    "listenKey": self.listen_key,
                }
                await self.send_text(json.dumps(event, separators=(",", ":")))
                self.drop(1000, "listenKey expired")
                return
