"""The real KlineStream against a real running simulator."""

import asyncio
import gzip
import json
import time

import httpx
import pytest
from stream_helpers import run
from stream_helpers import take as take_items
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from goldrl_dagster.lib.bingx.errors import BingXError
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.market import MINUTE_MS
from goldrl_dagster.lib.bingx.stream import KlineStream

XAUT = "XAUT-USDT"


class Counting(httpx.HTTPTransport):
    def __init__(self):
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request):
        self.paths.append(request.url.path)
        return super().handle_request(request)


async def take(stream: KlineStream, n: int, on_each=None) -> list:
    return await take_items(stream.closed_klines(), n, on_each)


def assert_consecutive(klines):
    times = [k.open_time_ms for k in klines]
    assert times == list(range(times[0], times[0] + len(times) * MINUTE_MS, MINUTE_MS)), times


def test_closed_klines_are_final_consecutive_and_equal_rest(fast_sim):
    stream = KlineStream(fast_sim.ws_url, "Gold-USDT")
    klines = run(take(stream, 5))
    assert_consecutive(klines)
    assert klines[-1].open_time_ms + MINUTE_MS <= fast_sim.clock.now_ms()  # all closed
    with BingXRestClient(fast_sim.base_url) as rest:
        from_rest = rest.klines_range(
            XAUT, "1m", klines[0].open_time_ms, klines[-1].open_time_ms + MINUTE_MS
        )
    assert klines == from_rest
    assert stream.reconnects == 0


def test_reconnect_after_drop_refills_the_gap_over_rest(start_sim):
    sim = start_sim(seed=3, speed=600.0, push_interval=0.02, ping_interval=0.5)
    transport = Counting()
    with BingXRestClient(sim.base_url, transport=transport) as rest:
        stream = KlineStream(sim.ws_url, XAUT, rest_client=rest, reconnect_backoff=(1.0, 1.0))

        def drop_after_third(count):
            if count == 3:
                sim.drop_connections()

        klines = run(take(stream, 20, drop_after_third))
        assert stream.reconnects >= 1
        assert transport.paths, "the gap was not refilled over REST"
        assert_consecutive(klines)  # at 600x, several minutes passed while disconnected
        assert klines == rest.klines_range(
            XAUT, "1m", klines[0].open_time_ms, klines[-1].open_time_ms + MINUTE_MS
        )


def test_without_rest_the_stream_stays_ordered_after_a_drop(start_sim):
    sim = start_sim(seed=3, speed=600.0, push_interval=0.02, ping_interval=0.5)
    stream = KlineStream(sim.ws_url, XAUT, reconnect_backoff=(0.5, 0.5))
    klines = run(take(stream, 8, lambda n: n == 2 and sim.drop_connections()))
    times = [k.open_time_ms for k in klines]
    assert times == sorted(set(times))
    assert stream.reconnects >= 1
    finals = {k.open_time_ms: k for k in sim.market.candles(XAUT, times[0], times[-1] + 1)}
    assert all(k == finals[k.open_time_ms] for k in klines)  # only final values, gap or not


def test_stream_answers_pings_and_is_not_dropped(fast_sim):
    # ping_interval is 0.5 s: in 3 s a client that did not answer would be dropped repeatedly.
    stream = KlineStream(fast_sim.ws_url, XAUT)
    run(take(stream, 6))
    assert stream.reconnects == 0


def test_refused_subscription_raises(fast_sim):
    stream = KlineStream(fast_sim.ws_url, XAUT)
    stream.data_type = f"{XAUT}@kline_7m"  # a topic the server refuses (no such interval)
    with pytest.raises(BingXError, match="80015"):
        run(take(stream, 1), timeout=10)


async def raw_session(url: str, answer_pings: bool, seconds: float) -> dict:
    """A bare client: records frames, optionally answers Ping, notes when it was dropped."""
    seen = {"frames": 0, "pings": 0, "acks": [], "pushes": [], "closed_after": None}
    started = time.monotonic()
    async with connect(url) as ws:
        await ws.send(json.dumps({"id": "a1", "reqType": "sub", "dataType": f"{XAUT}@kline_1m"}))
        await ws.send(json.dumps({"id": "a2", "reqType": "sub", "dataType": "NOPE-USDT@kline_1m"}))
        try:
            while time.monotonic() - started < seconds:
                try:
                    frame = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                assert isinstance(frame, bytes)  # every frame is binary gzip
                text = gzip.decompress(frame).decode()
                seen["frames"] += 1
                if text == "Ping":
                    seen["pings"] += 1
                    if answer_pings:
                        await ws.send("Pong")
                    continue
                message = json.loads(text)
                if "id" in message:
                    seen["acks"].append(message)
                else:
                    seen["pushes"].append(message)
        except ConnectionClosed:
            seen["closed_after"] = time.monotonic() - started
    return seen


def test_server_pings_and_drops_clients_that_do_not_pong(fast_sim):
    silent = run(raw_session(fast_sim.ws_url, answer_pings=False, seconds=5.0))
    assert silent["pings"] >= 1
    assert silent["closed_after"] is not None and silent["closed_after"] < 2.0  # 2 x 0.5 s + slack

    polite = run(raw_session(fast_sim.ws_url, answer_pings=True, seconds=3.0))
    assert polite["closed_after"] is None
    assert polite["pings"] >= 4

    acks = {a["id"]: a for a in polite["acks"]}
    assert acks["a1"]["code"] == 0 and acks["a1"]["msg"] == ""
    assert acks["a2"]["code"] != 0
    push = polite["pushes"][-1]
    assert push["code"] == 0 and push["dataType"] == f"{XAUT}@kline_1m" and push["s"] == XAUT
    (kline,) = push["data"]
    assert set(kline) == {"o", "h", "l", "c", "v", "T"}
    assert all(isinstance(kline[k], str) for k in "ohlcv")
    assert kline["T"] % MINUTE_MS == 0  # T is the candle's OPEN time
