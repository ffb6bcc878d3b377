"""The simulator's book, ticker and mark-price channels: BingX's push shapes, parsed."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pytest
from websockets.asyncio.client import connect

from goldrl_dagster.lib.bingx.market_models import (
    parse_book_ticker_push,
    parse_depth_push,
    parse_incr_depth_push,
    parse_mark_price_push,
    parse_ticker_push,
)
from goldrl_dagster.lib.bingx.models import parse_ticker_24h
from goldrl_dagster.lib.bingx.order_book import OrderBook
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from tests.support.stream_helpers import run


async def _pushes(ws_url: str, data_type: str, n: int) -> list[dict]:
    """Subscribe over a raw socket; return the first ``n`` data pushes (gzip frames)."""
    out: list[dict] = []
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"id": "1", "reqType": "sub", "dataType": data_type}))
        while len(out) < n:
            frame = await ws.recv()
            assert isinstance(frame, bytes)
            text = gzip.decompress(frame).decode()
            if text == "Ping":
                await ws.send("Pong")
                continue
            message = json.loads(text)
            if message.get("id") == "1":
                assert message["code"] == 0, message
                continue
            assert message["dataType"] == data_type
            out.append(message)
    return out


@pytest.mark.parametrize(
    ("channel", "parse"),
    [
        ("depth20@100ms", parse_depth_push),
        ("depth5", parse_depth_push),
        ("ticker", parse_ticker_push),
        ("markPrice", parse_mark_price_push),
        ("bookTicker", parse_book_ticker_push),
    ],
)
def test_each_channel_pushes_records_that_parse(
    fast_sim: SimulatorServer, channel: str, parse: object
) -> None:
    pushes = run(_pushes(fast_sim.ws_url, f"PAXG-USDT@{channel}", 3))
    for push in pushes:
        assert isinstance(push["data"], dict) and isinstance(push["ts"], int)
        (record,) = parse(push, 0)  # type: ignore[operator]
        assert record.symbol == "PAXG-USDT" and record.time_ms == push["ts"]
    if channel.startswith("depth"):
        levels = int(channel.removeprefix("depth").split("@")[0])
        assert len(pushes[0]["data"]["bids"]) == levels
        # BingX sends asks worst first; the parser puts the best first.
        asks = [float(p) for p, _ in pushes[0]["data"]["asks"]]
        assert asks == sorted(asks, reverse=True)


def test_a_ticker_push_parses_into_the_rest_tickers_record(fast_sim: SimulatorServer) -> None:
    (push,) = run(_pushes(fast_sim.ws_url, "XAUT-USDT@ticker", 1))
    (pushed,) = parse_ticker_push(push, 0)
    rest = parse_ticker_24h(fast_sim.feeds.ticker("XAUT-USDT", push["ts"]))
    assert pushed.bid_qty is not None and pushed.ask_qty is not None
    assert pushed == dataclasses.replace(rest, time_ms=push["ts"])


def test_incr_depth_sends_the_book_then_updates_with_ids_stepping_by_one(
    fast_sim: SimulatorServer,
) -> None:
    pushes = run(_pushes(fast_sim.ws_url, "XAUT-USDT@incrDepth", 6))
    updates = [parse_incr_depth_push(p, 0)[0] for p in pushes]
    assert updates[0].action == "all" and {u.action for u in updates[1:]} == {"update"}
    ids = [u.update_id for u in updates]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    # Applying the updates to the first book gives the simulator's book at the last push.
    book = OrderBook(20)
    book.replace(updates[0].bids, updates[0].asks, ids[0])
    for u in updates[1:]:
        book.apply(u.bids, u.asks, u.update_id)
    expected = fast_sim.feeds.depth("XAUT-USDT", 20, updates[-1].time_ms)
    assert book.levels("bids") == tuple((float(p), float(q)) for p, q in expected["bids"])
    assert book.levels("asks") == tuple((float(p), float(q)) for p, q in expected["asks"])


def test_unknown_channels_are_refused(fast_sim: SimulatorServer) -> None:
    async def ack(data_type: str) -> dict:
        async with connect(fast_sim.ws_url) as ws:
            await ws.send(json.dumps({"id": "x", "reqType": "sub", "dataType": data_type}))
            while True:
                message = json.loads(gzip.decompress(await ws.recv()).decode())
                if isinstance(message, dict) and message.get("id") == "x":
                    return message

    for bad in ("XAUT-USDT@depth7", "XAUT-USDT@depth20@42ms", "XAUT-USDT@nope"):
        assert run(ack(bad))["code"] != 0, bad


def test_the_book_drops_the_older_level_of_a_crossed_top() -> None:
    book = OrderBook(3)
    book.replace(((100.0, 1.0), (99.0, 1.0)), ((101.0, 1.0), (102.0, 1.0)), 0)
    book.apply((), ((100.0, 2.0),), 5)  # a fresh ask at the stale best bid
    assert book.levels("bids") == ((99.0, 1.0),)
    assert book.levels("asks")[0] == (100.0, 2.0)
    book.apply(((98.0, 1.0), (97.0, 1.0), (96.0, 1.0)), (), 6)
    assert len(book.levels("bids")) == 3  # trimmed to max_levels
    with pytest.raises(ValueError, match="max_levels"):
        OrderBook(0)


@pytest.mark.parametrize(
    ("parse", "message", "problem"),
    [
        (
            parse_depth_push,
            {"dataType": "X-USDT@depth5", "data": {"bids": [["101", "1"]], "asks": [["100", "1"]]}},
            "crossed book",
        ),
        (
            parse_depth_push,
            {"dataType": "X-USDT@depth5", "data": {"bids": "x", "asks": []}},
            "'bids' is not a list",
        ),
        (
            parse_incr_depth_push,
            {
                "dataType": "X-USDT@incrDepth",
                "data": {"action": "diff", "lastUpdateId": 1, "bids": [], "asks": []},
            },
            "'action' is 'diff'",
        ),
        (
            parse_incr_depth_push,
            {"dataType": "X-USDT@incrDepth", "data": {"action": "update", "bids": [], "asks": []}},
            "'lastUpdateId' is missing",
        ),
        (
            parse_ticker_push,
            {"dataType": "X-USDT@ticker", "data": {"c": "1", "o": "1"}},
            "'h' is missing",
        ),
        (
            parse_mark_price_push,
            {"dataType": "X-USDT@markPrice", "data": {"p": "-1"}},
            "not positive",
        ),
        (
            parse_book_ticker_push,
            {"dataType": "X-USDT@bookTicker", "data": {"b": "2", "B": "1", "a": "1", "A": "1"}},
            "crossed",
        ),
        (parse_mark_price_push, {"dataType": "nonsense", "data": {"p": "1"}}, "not SYMBOL@channel"),
    ],
)
def test_malformed_pushes_are_refused_with_the_problem_named(
    parse: object, message: dict, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        parse(message, 0)  # type: ignore[operator]
    errors: list[ValueError] = []
    assert parse(message, 0, errors=errors) == [] and len(errors) == 1  # type: ignore[operator]
