"""``incrDepth`` after a skipped id: a fresh subscription's whole book, on either kind of socket."""

from __future__ import annotations

import itertools

import pytest
from stream_helpers import run

from goldrl_dagster.lib.bingx.market_connection import MarketConnection
from goldrl_dagster.lib.bingx.market_models import BookSnapshot
from goldrl_dagster.lib.bingx.order_book import BookResync, IncrDepthStream
from goldrl_dagster.lib.bingx.rest import BingXRestClient

XAUT = "XAUT-USDT"


@pytest.mark.parametrize("shared", [True, False], ids=["shared socket", "own socket"])
def test_a_skipped_id_is_reported_once_and_the_books_after_it_are_exact(fast_sim, shared):
    async def main(rest: BingXRestClient) -> tuple[list, IncrDepthStream, MarketConnection]:
        connection = MarketConnection(fast_sim.ws_url, reconnect_backoff=(0.05, 0.2))
        kwargs = {"connection": connection} if shared else {"reconnect_backoff": (0.05, 0.2)}
        stream = IncrDepthStream(fast_sim.ws_url, XAUT, rest, **kwargs)
        items: list = []
        async for item in stream.updates():
            items.append(item)
            books = [i for i in items if isinstance(i, BookSnapshot)]
            if len(books) == 5 and isinstance(item, BookSnapshot):
                fast_sim.skip_next_update_ids(1)
            if any(isinstance(i, BookResync) for i in items) and isinstance(item, BookSnapshot):
                after = items.index(next(i for i in items if isinstance(i, BookResync)))
                if len(items) - after > 5:
                    break
        return items, stream, connection

    with BingXRestClient(fast_sim.base_url) as rest:
        items, stream, connection = run(main(rest), timeout=30.0)
    (resync,) = [i for i in items if isinstance(i, BookResync)]
    # A resync's own resubscription is not a new connection to its consumer.
    assert items.count("connected") == 1
    assert stream.resyncs == 1
    assert resync.expected_id is not None and resync.received_id == resync.expected_id + 1
    books = [i for i in items if isinstance(i, BookSnapshot)]
    first_after = items[items.index(resync) + 1]
    assert isinstance(first_after, BookSnapshot)
    assert resync.time_ms <= resync.resumed_ms == first_after.time_ms
    levels = lambda side: [(float(p), float(q)) for p, q in side]  # noqa: E731
    for book in books:
        exchange = fast_sim.feeds.depth(XAUT, 20, book.time_ms)
        assert (levels(book.bids), levels(book.asks)) == (
            levels(exchange["bids"]), levels(exchange["asks"])
        )  # fmt: skip
    ids = [b.update_id for b in books]
    assert sum(1 for a, b in itertools.pairwise(ids) if b - a != 1) == 1
    # The resync was one fresh subscription: on a shared socket without reconnecting it.
    assert stream.stream.reconnects == 1
    if shared:
        assert connection.reconnects == 0
