"""The account stream against the simulator: typed events, reconnects, keys, faults."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from decimal import Decimal

import pytest
from stream_helpers import run

from goldrl_dagster.lib.bingx.account import AccountUpdate, ListenKeyExpired, OrderUpdate
from goldrl_dagster.lib.bingx.account_stream import AccountStream, AccountStreamGap
from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.errors import AuthenticationError
from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.bingx.trading import BingXTradingClient

XAUT = "XAUT-USDT"


def synchronous(test):
    """Run an async test body to completion (with the suite's timeout helper)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return run(test(*args, **kwargs))

    return wrapper


class Consumer:
    """Runs a stream in the background and keeps what it yields."""

    def __init__(self, stream: AccountStream) -> None:
        self.stream = stream
        self.items: list = []
        self.error: BaseException | None = None
        self.task: asyncio.Task | None = None

    async def _run(self) -> None:
        try:
            async for item in self.stream.events():
                self.items.append(item)
        except Exception as exc:
            self.error = exc

    def start(self) -> Consumer:
        self.task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def of(self, kind: type) -> list:
        return [item for item in self.items if isinstance(item, kind)]

    async def until(self, predicate, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {self.items}")
            await asyncio.sleep(0.02)


@pytest.fixture
def trader(make_trader):
    return make_trader()


def stream_for(exchange_sim, trader, **kwargs) -> AccountStream:
    kwargs.setdefault("reconnect_backoff", (0.05, 0.2))
    return AccountStream(exchange_sim.ws_url, trader.client, **kwargs)


def place(trader, side: str, quantity: str, client_id: str, **kwargs):
    return asyncio.to_thread(
        trader.client.place_order, OrderRequest(XAUT, side, Decimal(quantity), client_id, **kwargs)
    )


def fills_of(consumer: Consumer, client_id: str) -> list[OrderUpdate]:
    return [
        u
        for u in consumer.of(OrderUpdate)
        if u.order.client_order_id == client_id and u.order.status == "FILLED"
    ]


@synchronous
async def test_order_and_account_updates_arrive_as_typed_records(exchange_sim, trader):
    consumer = Consumer(stream_for(exchange_sim, trader)).start()
    await consumer.until(lambda: exchange_sim.exchange.listen_keys)
    await asyncio.sleep(0.2)  # connected
    placed = await place(trader, "BUY", "0.5", "stream-1")
    await consumer.until(lambda: consumer.of(AccountUpdate) and fills_of(consumer, "stream-1"))
    updates = [u for u in consumer.of(OrderUpdate) if u.order.order_id == placed.order_id]
    assert [u.order.status for u in updates] == ["NEW", "FILLED"]
    assert updates[-1].order.executed_qty == Decimal("0.5")
    queried = await asyncio.to_thread(trader.client.query_order, XAUT, order_id=placed.order_id)
    assert updates[-1].order.avg_price == queried.avg_price
    [account] = consumer.of(AccountUpdate)
    [balance] = await asyncio.to_thread(trader.client.balance)
    assert account.balances[0].balance == balance.balance
    assert account.positions[0].quantity == Decimal("0.5")
    await consumer.stop()
    assert exchange_sim.exchange.listen_keys == {}  # the key is deleted on exit


@synchronous
async def test_a_dropped_connection_is_reconnected_and_reported_as_a_gap(exchange_sim, trader):
    consumer = Consumer(stream_for(exchange_sim, trader)).start()
    await consumer.until(lambda: exchange_sim.exchange.listen_keys)
    await asyncio.sleep(0.2)
    exchange_sim.drop_connections()
    await consumer.until(lambda: consumer.of(AccountStreamGap))
    [gap] = consumer.of(AccountStreamGap)
    assert gap.reconnects == 1 and "1012" in gap.reason
    await place(trader, "BUY", "0.5", "after-gap")
    await consumer.until(lambda: fills_of(consumer, "after-gap"))
    assert consumer.stream.reconnects == 1
    await consumer.stop()


@synchronous
async def test_repeats_are_dropped_and_a_lost_push_is_healed_by_the_next(exchange_sim, trader):
    consumer = Consumer(stream_for(exchange_sim, trader)).start()
    await consumer.until(lambda: exchange_sim.exchange.listen_keys)
    await asyncio.sleep(0.2)
    exchange_sim.duplicate_next_account_pushes(3)
    await place(trader, "BUY", "0.5", "dup-1")
    await consumer.until(lambda: consumer.of(AccountUpdate))
    await asyncio.sleep(0.2)
    assert consumer.stream.duplicates == 3
    assert len([u for u in consumer.of(OrderUpdate) if u.order.client_order_id == "dup-1"]) == 2
    exchange_sim.drop_next_account_pushes(1)  # the NEW push is lost …
    await place(trader, "SELL", "0.5", "lost-1", reduce_only=True)
    await consumer.until(lambda: fills_of(consumer, "lost-1"))
    lost = [u for u in consumer.of(OrderUpdate) if u.order.client_order_id == "lost-1"]
    assert [u.order.status for u in lost] == ["FILLED"]  # … the cumulative next one says all
    assert lost[0].order.executed_qty == Decimal("0.5")
    await consumer.stop()


@synchronous
async def test_an_expired_key_is_replaced(exchange_sim, trader):
    consumer = Consumer(stream_for(exchange_sim, trader)).start()
    await consumer.until(lambda: exchange_sim.exchange.listen_keys)
    await asyncio.sleep(0.2)
    [first_key] = list(exchange_sim.exchange.listen_keys)
    exchange_sim.exchange.delete_listen_key(first_key)  # as if it had lapsed
    await consumer.until(lambda: consumer.of(ListenKeyExpired) and consumer.of(AccountStreamGap))
    assert consumer.stream.keys_created == 2
    assert first_key not in exchange_sim.exchange.listen_keys
    await place(trader, "BUY", "0.5", "new-key")
    await consumer.until(lambda: fills_of(consumer, "new-key"))
    await consumer.stop()


@synchronous
async def test_the_key_is_extended_while_the_stream_runs(exchange_sim, trader):
    consumer = Consumer(stream_for(exchange_sim, trader, extend_every_s=0.2)).start()
    await consumer.until(lambda: consumer.stream.extensions >= 2)
    [(key, (_, expiry))] = list(exchange_sim.exchange.listen_keys.items())
    assert expiry > time.monotonic() + 3590  # renewed to a fresh hour
    await consumer.stop()
    assert key not in exchange_sim.exchange.listen_keys


@synchronous
async def test_a_malformed_push_is_counted_and_skipped(exchange_sim, trader):
    consumer = Consumer(stream_for(exchange_sim, trader)).start()
    await consumer.until(lambda: exchange_sim.exchange.listen_keys)
    await asyncio.sleep(0.2)
    bad = {"e": "ORDER_TRADE_UPDATE", "E": 1, "o": {"i": None}}
    exchange_sim.push_account_event(trader.api_key, bad)
    exchange_sim.push_account_event(trader.api_key, {"e": "ACCOUNT_UPDATE", "E": "soon"})
    await place(trader, "BUY", "0.5", "after-bad")
    await consumer.until(lambda: fills_of(consumer, "after-bad"))
    assert consumer.stream.malformed == 2
    assert consumer.error is None
    await consumer.stop()


@synchronous
async def test_refused_credentials_end_the_stream_with_the_reason(exchange_sim):
    client = BingXTradingClient(
        exchange_sim.base_url, Credentials("no-such-key", "x"), rate_budget=None
    )
    consumer = Consumer(AccountStream(exchange_sim.ws_url, client)).start()
    await consumer.until(lambda: consumer.task.done(), timeout=5)
    assert isinstance(consumer.error, AuthenticationError)
