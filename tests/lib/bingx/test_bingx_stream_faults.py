"""The streams under every fault the issue names, against a real simulator injecting them."""

from __future__ import annotations

from collections import Counter

from stream_helpers import run as run_with_timeout
from stream_helpers import take

from goldrl_dagster.lib.bingx.models import parse_trade_row, trade_key
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.market import MINUTE_MS
from goldrl_dagster.lib.bingx.stream import KlineStream, TradeStream

XAUT = "XAUT-USDT"


def run(coro, timeout: float = 40.0):
    return run_with_timeout(coro, timeout)


async def take_klines(stream: KlineStream, n: int, on_each=None) -> list:
    return await take(stream.closed_klines(), n, on_each)


async def take_trades(stream: TradeStream, n: int, on_each=None) -> list:
    return await take(stream.trades(), n, on_each)


def assert_final_and_consecutive(sim, klines):
    times = [k.open_time_ms for k in klines]
    assert times == list(range(times[0], times[0] + len(times) * MINUTE_MS, MINUTE_MS)), times
    assert klines == sim.market.candles(XAUT, times[0], times[-1] + MINUTE_MS)


def test_repeats_of_the_open_kline_yield_only_final_candles(fast_sim):
    stream = KlineStream(fast_sim.ws_url, XAUT)  # no REST: finality comes from pushes alone
    klines = run(take_klines(stream, 4))
    assert stream.pushes >= 3 * len(klines)  # the open candle was pushed again and again
    assert_final_and_consecutive(fast_sim, klines)


def test_duplicated_pushes_change_nothing(fast_sim):
    fast_sim.duplicate_next_pushes(200)
    stream = KlineStream(fast_sim.ws_url, XAUT)
    klines = run(take_klines(stream, 4))
    assert_final_and_consecutive(fast_sim, klines)


def test_reordered_pushes_still_give_final_candles_with_rest(start_sim):
    sim = start_sim(seed=5, speed=600.0, push_interval=0.02, ping_interval=0.5)
    with BingXRestClient(sim.base_url) as rest:
        stream = KlineStream(sim.ws_url, XAUT, rest_client=rest)
        # Reversing the pushes around each candle boundary delivers a candle's final values
        # after the next candle's first push: only REST confirmation gets them right.
        sim.reorder_next_pushes(3)
        klines = run(take_klines(stream, 10, lambda n: sim.reorder_next_pushes(3)))
    assert_final_and_consecutive(sim, klines)


def test_corrupt_frame_recycles_the_connection_and_loses_no_candle(start_sim):
    sim = start_sim(seed=3, speed=600.0, push_interval=0.02, ping_interval=0.5)
    with BingXRestClient(sim.base_url) as rest:
        stream = KlineStream(sim.ws_url, XAUT, rest_client=rest, reconnect_backoff=(0.3, 0.3))
        klines = run(take_klines(stream, 12, lambda n: n == 3 and sim.corrupt_next_frame()))
    assert stream.corrupt_frames == 1 and stream.reconnects >= 1
    assert_final_and_consecutive(sim, klines)  # the candle in the corrupt frame came via REST


def test_malformed_kline_items_are_skipped_and_the_good_ones_in_the_same_push_kept(fast_sim):
    # Each of the next pushes carries [good item, copy with "o": null]. Without REST the
    # final values come from pushes alone, so losing a push's good item shows as a wrong candle.
    fast_sim.malform_next_pushes(8)
    stream = KlineStream(fast_sim.ws_url, XAUT)
    klines = run(take_klines(stream, 8))
    assert stream.malformed_pushes == 8
    assert stream.reconnects == 0 and stream.corrupt_frames == 0  # not a broken connection
    assert_final_and_consecutive(fast_sim, klines)


def test_a_push_without_usable_data_is_skipped_and_rest_fills_in(start_sim):
    sim = start_sim(seed=4, speed=120.0, push_interval=0.05, ping_interval=0.5)
    sim.malform_next_pushes(3, field="data", value="garbage")  # the whole push is malformed
    with BingXRestClient(sim.base_url) as rest:
        stream = KlineStream(sim.ws_url, XAUT, rest_client=rest)
        klines = run(take_klines(stream, 4))
    assert stream.malformed_pushes == 3 and stream.reconnects == 0
    assert_final_and_consecutive(sim, klines)


def sim_trade_keys(sim, after_ms: int, until_ms: int) -> set[str]:
    return {
        trade_key(XAUT, t.time_ms, t.price, t.quantity, t.is_buyer_maker)
        for t in sim.feeds.trades_between(XAUT, after_ms, until_ms)
    }


def test_trade_stream_dedupes_duplicated_and_reordered_pushes(fast_sim):
    fast_sim.duplicate_next_pushes(30)
    fast_sim.reorder_next_pushes(4)
    stream = TradeStream(fast_sim.ws_url, "Gold-USDT")
    trades = run(take_trades(stream, 150))
    keys = [t.trade_key for t in trades]
    assert len(set(keys)) == len(keys)  # each trade once
    assert stream.duplicates >= 1
    first, last = min(t.time_ms for t in trades), max(t.time_ms for t in trades)
    # Exactly the simulator's trades in the covered span: none lost, none invented.
    assert set(keys) == sim_trade_keys(fast_sim, first - 1, last)
    assert all(t.symbol == XAUT and t.price > 0 and t.quantity > 0 for t in trades)


def test_trade_stream_refills_over_rest_after_a_corrupt_frame(start_sim):
    sim = start_sim(seed=9, speed=120.0, push_interval=0.05, ping_interval=0.5)
    with BingXRestClient(sim.base_url) as rest:
        stream = TradeStream(sim.ws_url, XAUT, rest_client=rest, reconnect_backoff=(0.5, 0.5))
        trades = run(take_trades(stream, 200, lambda n: n == 40 and sim.corrupt_next_frame()))
    assert stream.corrupt_frames == 1 and stream.reconnects >= 1
    assert stream.refilled >= 1  # the trades in the corrupt frame (and the reconnect gap)
    assert any(t.fill_id for t in trades)  # refilled over REST, keyed by their fill ids
    # Pushed trades are keyed by content and refilled ones by fill id: compare by content,
    # counting repeats, so a trade yielded twice (once per key) would show.
    contents = Counter(t.content_key for t in trades)
    first, last = min(t.time_ms for t in trades), max(t.time_ms for t in trades)
    assert contents == Counter(sim_trade_keys(sim, first - 1, last))


class TwinFillRest(BingXRestClient):
    """The real REST client, whose recent trades gain a second fill (new fillId) with the same
    content as the last trade the consumer received, as when two fills share time, price and
    size."""

    def __init__(self, base_url: str, received: list) -> None:
        super().__init__(base_url)
        self.received = received
        self.twins: list = []

    def recent_trades(self, symbol: str, limit: int = 500) -> list:
        trades = super().recent_trades(symbol, limit)
        last = self.received[-1]
        twin = parse_trade_row(
            {"time": last.time_ms, "isBuyerMaker": last.is_buyer_maker, "price": last.price,
             "qty": last.quantity, "fillId": f"twin-{len(self.twins)}"},
            symbol,
        )  # fmt: skip
        self.twins.append(twin)
        return sorted([*trades, twin], key=lambda t: (t.time_ms, t.trade_key))


def test_trade_refill_keeps_a_distinct_fill_sharing_a_pushed_trades_content(start_sim):
    sim = start_sim(seed=9, speed=120.0, push_interval=0.05, ping_interval=0.5)
    received: list = []

    def on_each(n: int) -> None:
        if n == 40:
            sim.corrupt_next_frame()

    occurrences: list[tuple[str, int]] = []

    async def collect(stream: TradeStream) -> list:
        async for trade in stream.trades():
            received.append(trade)
            occurrences.append((trade.content_key, stream.occurrence(trade)))
            on_each(len(received))
            if len(received) == 200:
                return received
        raise AssertionError("stream ended")

    with TwinFillRest(sim.base_url, received) as rest:
        stream = TradeStream(sim.ws_url, XAUT, rest_client=rest, reconnect_backoff=(0.5, 0.5))
        trades = run(collect(stream))
    assert stream.reconnects >= 1 and rest.twins
    # Each twin's content was pushed once and is in REST twice: it is yielded exactly twice
    # (which of its two REST rows makes up the second cannot be told, nor matters); every
    # other trade exactly once.
    first, last = min(t.time_ms for t in trades), max(t.time_ms for t in trades)
    expected = Counter(sim_trade_keys(sim, first - 1, last))
    expected.update(t.content_key for t in rest.twins)
    assert Counter(t.content_key for t in trades) == expected
    # The stream numbers the trades of one content 1, 2, … (the recorder's occurrence key).
    numbered: dict[str, list[int]] = {}
    for key, occurrence in occurrences:
        numbered.setdefault(key, []).append(occurrence)
    assert all(n == list(range(1, len(n) + 1)) for n in numbered.values())
    assert any(len(n) == 2 for n in numbered.values())


def test_malformed_trade_items_are_skipped_and_the_good_ones_in_the_same_push_kept(fast_sim):
    fast_sim.malform_next_pushes(10)  # each push: [good trades…, copy of the last with "p": null]
    stream = TradeStream(fast_sim.ws_url, XAUT)
    trades = run(take_trades(stream, 150))
    assert stream.malformed_pushes == 10 and stream.reconnects == 0
    keys = [t.trade_key for t in trades]
    first, last = min(t.time_ms for t in trades), max(t.time_ms for t in trades)
    assert set(keys) == sim_trade_keys(fast_sim, first - 1, last)  # no good trade lost
    assert len(set(keys)) == len(keys)
