"""One market-stream socket carrying many subscriptions, against the real simulator."""

from __future__ import annotations

import asyncio

import pytest
from stream_helpers import run

from goldrl_dagster.lib.bingx.errors import BingXError
from goldrl_dagster.lib.bingx.market_connection import MarketConnection, SharedChannel
from goldrl_dagster.lib.bingx.market_models import parse_ticker_push
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.stream import KlineStream, PushStream, TradeStream

XAUT, PAXG = "XAUT-USDT", "PAXG-USDT"
TOPICS = (f"{XAUT}@trade", f"{XAUT}@ticker", f"{PAXG}@trade", f"{PAXG}@bookTicker")


def _connection(sim, **kwargs: object) -> MarketConnection:
    return MarketConnection(sim.ws_url, reconnect_backoff=(0.05, 0.2), idle_timeout=5.0, **kwargs)


async def _events(channel: SharedChannel, n: int) -> list[str]:
    """The kinds of the next ``n`` events of ``channel`` ("connected" / "message")."""
    kinds = []
    async for kind, _ in channel:
        kinds.append(kind)
        if len(kinds) == n:
            break
    return kinds


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_many_subscriptions_share_one_socket_and_each_gets_its_own_pushes(fast_sim) -> None:
    async def main() -> tuple[list, list, list]:
        connection = _connection(fast_sim)
        channels = [connection.channel(t) for t in TOPICS]
        firsts = await asyncio.gather(*(_events(c, 3) for c in channels))
        sockets = fast_sim.market_subscriptions()
        pushed: list[str] = []
        for channel in channels:
            kind, message = await anext(channel)
            while kind != "message":
                kind, message = await anext(channel)
            assert message is not None
            pushed.append(message["dataType"])
        for channel in channels:
            await channel.aclose()
        return firsts, sockets, pushed

    firsts, sockets, pushed = run(main())
    assert sockets == [tuple(sorted(TOPICS))]  # one socket, every topic on it
    assert all(kinds[0] == "connected" and kinds[1:] == ["message"] * 2 for kinds in firsts)
    assert pushed == list(TOPICS)  # each channel received only its own data type


def test_a_dropped_socket_resubscribes_every_channel_on_one_new_socket(fast_sim) -> None:
    async def main() -> tuple[int, list[int], list]:
        connection = _connection(fast_sim)
        channels = [connection.channel(t) for t in TOPICS]
        await asyncio.gather(*(_events(c, 2) for c in channels))
        fast_sim.drop_connections()

        # Each channel reads on until it is acknowledged on the new socket.
        async def reconnected(channel: SharedChannel) -> None:
            async for kind, _ in channel:
                if kind == "connected":
                    return

        await asyncio.gather(*(reconnected(c) for c in channels))
        sockets = fast_sim.market_subscriptions()
        for channel in channels:
            await channel.aclose()
        await _until(lambda: not fast_sim.market_subscriptions())
        return connection.reconnects, [c.reconnects for c in channels], sockets

    reconnects, per_channel, sockets = run(main())
    assert reconnects == 1
    assert per_channel == [1, 1, 1, 1]
    assert sockets == [tuple(sorted(TOPICS))]


def test_a_refused_subscription_fails_its_channel_alone(fast_sim) -> None:
    async def main() -> tuple[str, list[str], tuple]:
        connection = _connection(fast_sim)
        good = connection.channel(f"{XAUT}@trade")
        bad = connection.channel(f"{XAUT}@depth7@1ms")
        await _events(good, 1)
        with pytest.raises(BingXError) as refused:
            await _events(bad, 1)
        after = await _events(good, 2)
        topics = connection.topics
        await good.aclose()
        return str(refused.value), after, topics

    refused, after, topics = run(main())
    assert "depth7@1ms" in refused
    assert after == ["message", "message"]  # the other subscription went on, not reconnected
    assert topics == (f"{XAUT}@trade",)


def test_a_consumer_far_behind_is_resubscribed_without_touching_the_others(fast_sim) -> None:
    async def main() -> tuple[SharedChannel, SharedChannel, MarketConnection, list[str], int]:
        connection = _connection(fast_sim, queue_limit=30)
        slow = connection.channel(f"{XAUT}@ticker")
        busy = connection.channel(f"{XAUT}@trade")
        await _events(slow, 1)
        read = 0

        async def keep_reading() -> None:
            nonlocal read
            async for _ in busy:
                read += 1

        # Only `busy` is read: `slow` falls behind its limit of 30 pushes.
        reader = asyncio.create_task(keep_reading())
        await _until(lambda: slow.overflows >= 1, timeout=10.0)
        kinds = await _events(slow, 3)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await slow.aclose()
        await busy.aclose()
        return slow, busy, connection, kinds, read

    slow, busy, connection, kinds, read = run(main())
    assert kinds[0] == "connected"  # told first, so it refills or records the gap
    assert kinds[1:] == ["message", "message"]  # and it is served again
    assert slow.overflows >= 1 and slow.reconnects >= 1
    assert read > 30
    assert busy.reconnects == 0 and busy.overflows == 0
    assert connection.reconnects == 0


def test_a_corrupt_frame_replaces_the_socket_once_for_every_channel(fast_sim) -> None:
    async def main() -> tuple[int, int, list[int]]:
        connection = _connection(fast_sim)
        channels = [connection.channel(t) for t in TOPICS[:2]]
        await asyncio.gather(*(_events(c, 2) for c in channels))
        fast_sim.corrupt_next_frame()
        await _until(lambda: connection.reconnects >= 1)
        await asyncio.gather(*(_events(c, 2) for c in channels))
        for channel in channels:
            await channel.aclose()
        return connection.corrupt_frames, connection.reconnects, [c.reconnects for c in channels]

    corrupt, reconnects, per_channel = run(main())
    assert corrupt == 1 and reconnects == 1
    assert per_channel == [1, 1]


def test_a_data_type_is_subscribed_once_per_connection_and_topics_are_bounded(fast_sim) -> None:
    async def main() -> None:
        connection = _connection(fast_sim, max_topics=2)
        first = connection.channel(f"{XAUT}@trade")
        await _events(first, 1)
        with pytest.raises(ValueError, match="already subscribed"):
            await _events(connection.channel(f"{XAUT}@trade"), 1)
        second = connection.channel(f"{XAUT}@ticker")
        await _events(second, 1)
        with pytest.raises(ValueError, match="already carries 2 topics"):
            await _events(connection.channel(f"{PAXG}@ticker"), 1)
        await first.aclose()
        # A closed channel's place is free again, and it can subscribe anew.
        assert (await _events(first, 1)) == ["connected"]
        await first.aclose()
        await second.aclose()
        await _until(lambda: not fast_sim.market_subscriptions())

    run(main())


def test_streams_over_one_connection_keep_their_guarantees_across_a_drop(fast_sim) -> None:
    """Final candles in order and every trade once, with klines, trades and ticker on one socket."""

    async def main() -> tuple[list, list, int, list]:
        connection = _connection(fast_sim)
        with BingXRestClient(fast_sim.base_url) as rest:
            klines = KlineStream(fast_sim.ws_url, XAUT, rest_client=rest, connection=connection)
            trades = TradeStream(fast_sim.ws_url, XAUT, rest_client=rest, connection=connection)
            ticker = PushStream(
                fast_sim.ws_url, f"{XAUT}@ticker", parse_ticker_push, connection=connection
            )
            got_klines: list = []
            got_trades: list = []
            sockets: list = []

            async def read_klines() -> None:
                async for kline in klines.closed_klines():
                    got_klines.append(kline)
                    if len(got_klines) == 2:
                        sockets.extend(fast_sim.market_subscriptions())
                        fast_sim.drop_connections()
                    if len(got_klines) == 5:
                        return

            async def read_trades() -> None:
                async for trade in trades.trades():
                    got_trades.append(trade)
                    if len(got_klines) >= 5:
                        return

            async def read_ticker() -> None:
                async for _ in ticker.events():
                    if len(got_klines) >= 5:
                        return

            await asyncio.gather(read_klines(), read_trades(), read_ticker())
        return got_klines, got_trades, connection.reconnects, sockets

    klines, trades, reconnects, sockets = run(main(), timeout=40.0)
    assert reconnects >= 1
    assert len(sockets) == 1 and len(sockets[0]) == 3
    times = [k.open_time_ms for k in klines]
    assert times == list(range(times[0], times[0] + 5 * 60_000, 60_000))
    assert klines == fast_sim.market.candles(XAUT, times[0], times[-1] + 60_000)
    sent = fast_sim.feeds.trades_between(XAUT, trades[0].time_ms - 1, trades[-1].time_ms)
    key = lambda t: (t.time_ms, t.price, t.quantity, t.is_buyer_maker)  # noqa: E731
    assert sorted(map(key, trades)) == sorted(map(key, sent))  # none lost, none twice
