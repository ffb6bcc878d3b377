"""A local order book kept from BingX's ``incrDepth`` channel, rebuilt whole after a gap.

The stream sends the whole book (``action == "all"``) and then the levels that changed, each
push's ``lastUpdateId`` one above the previous one. :class:`IncrDepthStream` starts every
connection from a REST depth snapshot, replaced by the stream's whole book when it comes, and
applies the pushes in sequence. When an id is skipped (an update lost) it subscribes afresh
(on a shared socket that costs no reconnection): pushes are dropped until the new subscription's
whole book, so the book is never built on a hole, and is exact again at the first push after
the resync. Each resync is reported (:class:`BookResync`, with the stretch no book covers) so the
recorder can store it as an event.

Should the venue start a subscription with an update instead of a whole book, the updates go
onto the REST snapshot, which carries no update id: levels it holds that later pushes never
mention can linger. After each update the book therefore drops, on a crossed top, the older of
the two crossing levels, and keeps at most ``max_levels`` per side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from goldrl_dagster.lib.bingx.market_models import (
    BookSnapshot,
    BookUpdate,
    Level,
    parse_incr_depth_push,
)
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.stream import PushStream

log = logging.getLogger(__name__)


class OrderBook:
    """Price levels per side with the update that last touched each (0 = REST snapshot).

    Args:
        max_levels: Levels kept per side (the best ones).
    """

    def __init__(self, max_levels: int = 20) -> None:
        if max_levels < 1:
            raise ValueError(f"max_levels must be >= 1, got {max_levels}")
        self.max_levels = max_levels
        self._sides: dict[str, dict[float, tuple[float, int]]] = {"bids": {}, "asks": {}}

    def replace(self, bids: tuple[Level, ...], asks: tuple[Level, ...], stamp: int = 0) -> None:
        """Replace the whole book."""
        self._sides = {
            "bids": {p: (q, stamp) for p, q in bids if q > 0},
            "asks": {p: (q, stamp) for p, q in asks if q > 0},
        }
        self._tidy()

    def apply(self, bids: tuple[Level, ...], asks: tuple[Level, ...], stamp: int) -> None:
        """Set the given levels (quantity 0 removes one), then tidy the book."""
        for side, levels in (("bids", bids), ("asks", asks)):
            book = self._sides[side]
            for price, qty in levels:
                if qty == 0:
                    book.pop(price, None)
                else:
                    book[price] = (qty, stamp)
        self._tidy()

    def _tidy(self) -> None:
        bids, asks = self._sides["bids"], self._sides["asks"]
        while bids and asks:
            bid, ask = max(bids), min(asks)
            if bid < ask:
                break
            # A crossed top: the older level is the stale one.
            if bids[bid][1] <= asks[ask][1]:
                del bids[bid]
            else:
                del asks[ask]
        for side, best_first in (("bids", True), ("asks", False)):
            book = self._sides[side]
            if len(book) > self.max_levels:
                keep = sorted(book, reverse=best_first)[: self.max_levels]
                self._sides[side] = {p: book[p] for p in keep}

    def levels(self, side: str, depth: int | None = None) -> tuple[Level, ...]:
        """One side best first, ``(price, quantity)``, at most ``depth`` levels."""
        book = self._sides[side]
        prices = sorted(book, reverse=side == "bids")[:depth]
        return tuple((p, book[p][0]) for p in prices)


@dataclass(frozen=True)
class BookResync:
    """A resync of the local book after a skipped id (reported once the book is whole again).

    Attributes:
        symbol: Exchange symbol.
        time_ms: Event time of the push that revealed the gap.
        reason: ``sequence_skip`` (an id was skipped).
        expected_id: The id that should have come next, when known.
        received_id: The id that came instead.
        resumed_ms: Event time of the first book after the resync: no book covers
            ``[time_ms, resumed_ms)``.
    """

    symbol: str
    time_ms: int
    reason: str
    expected_id: int | None
    received_id: int | None
    resumed_ms: int | None = None


class IncrDepthStream:
    """The book of one symbol kept from ``SYM@incrDepth``; yields it after every update.

    Args:
        ws_url: Market-stream URL.
        symbol: Symbol or alias.
        rest_client: Source of the snapshot each subscription starts from.
        max_levels: Levels kept per side (and REST snapshot limit).
        stream_kwargs: Passed to :class:`PushStream` (backoff, timeouts).

    Attributes:
        resyncs: Resyncs after a skipped id.
        stale_updates: Pushes with an id at or below the book's (dropped).
    """

    def __init__(
        self,
        ws_url: str,
        symbol: str,
        rest_client: BingXRestClient,
        *,
        max_levels: int = 20,
        **stream_kwargs: object,
    ) -> None:
        self.stream: PushStream[BookUpdate] = PushStream(
            ws_url,
            f"{symbol}@incrDepth",
            parse_incr_depth_push,
            **stream_kwargs,  # type: ignore[arg-type]
        )
        self.symbol = self.stream.symbol
        self.book = OrderBook(max_levels)
        self.resyncs = 0
        self.stale_updates = 0
        self._rest = rest_client
        self._last_id: int | None = None
        self._skip: BookResync | None = None  # a resync under way: the skip that started it
        self._acknowledged = True  # False from a resubscription to its acknowledgement

    async def _snapshot(self) -> int:
        """Replace the book with a REST snapshot; returns the snapshot's time."""
        snap = await asyncio.to_thread(self._rest.depth, self.symbol, self.book.max_levels)
        self.book.replace(snap.bids, snap.asks, 0)
        return snap.time_ms

    def _state(self, time_ms: int) -> BookSnapshot:
        return BookSnapshot(
            self.symbol,
            "incrDepth",
            time_ms,
            self.book.levels("bids"),
            self.book.levels("asks"),
            self._last_id,
        )

    async def updates(self) -> AsyncIterator[BookSnapshot | BookResync | str]:
        """Yield the book after each applied push, each resync, and ``"connected"`` markers.

        Yields:
            ``"connected"`` per new connection (the book was reloaded from REST),
            :class:`BookResync` when the book is whole again after a skipped id (just before
            that book), and the book (:class:`BookSnapshot` with ``update_id``) after every
            applied push.

        Raises:
            BingXError: If BingX refuses the subscription or a REST snapshot fails.
        """
        async with contextlib.aclosing(self.stream.events()) as events:
            async for event in events:
                if event.kind == "connected":
                    await self._snapshot()
                    self._last_id = None  # the next push sets the sequence
                    self._acknowledged = True
                    if self._skip is None:  # not the resync's own resubscription
                        yield "connected"
                    continue
                for update in event.records:
                    out = await self._take(update)
                    for item in out:
                        yield item

    async def _take(self, update: BookUpdate) -> list[BookSnapshot | BookResync]:
        if not self._acknowledged:
            return []  # pushed before the resubscription: the new subscription starts over
        if update.action == "all":
            self.book.replace(update.bids, update.asks, update.update_id)
        elif self._last_id is not None and update.update_id <= self._last_id:
            self.stale_updates += 1
            return []
        elif self._last_id is not None and update.update_id != self._last_id + 1:
            expected = self._last_id + 1
            self.resyncs += 1
            log.warning(
                "%s: lastUpdateId %d after %d (expected %d); subscribing afresh for a whole book",
                self.stream.data_type, update.update_id, self._last_id, expected,
            )  # fmt: skip
            self._skip = BookResync(
                self.symbol, update.time_ms, "sequence_skip", expected, update.update_id
            )
            self._acknowledged = False
            await self.stream.resubscribe()
            return []
        else:
            self.book.apply(update.bids, update.asks, update.update_id)
        self._last_id = update.update_id
        out: list[BookSnapshot | BookResync] = []
        if self._skip is not None:
            out.append(replace(self._skip, resumed_ms=update.time_ms))
            self._skip = None
        out.append(self._state(update.time_ms))
        return out
