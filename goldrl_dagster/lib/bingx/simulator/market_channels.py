"""The simulator's market channels beside klines and trades, in BingX's swap V2 push shapes.

Every push is ``{"code": 0, "dataType": "<SYM>@<channel>", "ts": <ms>, "data": …}``:

* ``SYM@depth<5|10|20|50|100>[@<100ms|200ms|500ms>]``: a book snapshot,
  ``data = {"bids": [[px, qty]…], "asks": [[px, qty]…]}`` (asks worst first, as BingX sends);
* ``SYM@incrDepth``: ``data = {"action": "all" | "update", "lastUpdateId": n, "bids", "asks"}``,
  the whole book first, then the levels that changed (quantity ``"0"``: level removed), with
  ``lastUpdateId`` stepping by one per push;
* ``SYM@ticker``: ``data = {"e": "24hTicker", "E", "s", "p", "P", "c", "L", "h", "l", "v", "q",
  "o", "O", "C", "B", "b", "A", "a"}``;
* ``SYM@markPrice``: ``data = {"e": "markPriceUpdate", "E", "s", "p"}``;
* ``SYM@bookTicker``: ``data = {"e": "bookTicker", "u", "E", "T", "s", "b", "B", "a", "A"}``;
* ``SYM@lastPrice``: ``data = {"e": "lastPriceUpdate", "E", "s", "c"}``.

Values come from :class:`~.feeds.SimulatedFeeds`, so a channel agrees with REST at the same
virtual time (the incremental book with ``GET …/quote/depth?limit=`` :data:`INCR_DEPTH_LEVELS`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from goldrl_dagster.lib.bingx.simulator.feeds import SimulatedFeeds

DEPTH_LEVELS = (5, 10, 20, 50, 100)
DEPTH_SPEEDS = ("100ms", "200ms", "500ms")
# Levels per side of the incremental book (a REST snapshot with this limit is the same book).
INCR_DEPTH_LEVELS = 20
_DEPTH_RE = re.compile(r"^depth(\d+)(?:@(\d+ms))?$")
SNAPSHOT_CHANNELS = ("ticker", "markPrice", "bookTicker", "lastPrice", "incrDepth")


@dataclass
class ChannelState:
    """What one subscription to a market channel remembers between pushes.

    Attributes:
        channel: The part of the ``dataType`` after ``SYM@`` (``depth20@100ms``, ``ticker``…).
        levels: Book levels per side (depth channels).
        update_id: The last ``lastUpdateId`` (``incrDepth``) or ``u`` (``bookTicker``) sent.
        book: The book last sent (``incrDepth``): price text -> quantity text per side.
        last_second: Virtual second of the last ticker push (BingX pushes it once a second).
    """

    channel: str
    levels: int = 0
    update_id: int | None = None
    book: dict[str, dict[str, str]] = field(default_factory=dict)
    last_second: int | None = None


def parse_channel(channel: str) -> ChannelState | str:
    """The state of a new subscription to ``channel``, or the reason it is not served."""
    match = _DEPTH_RE.match(channel)
    if match:
        levels, speed = int(match.group(1)), match.group(2)
        if levels not in DEPTH_LEVELS:
            return f"depth levels must be one of {DEPTH_LEVELS}, not {levels}"
        if speed is not None and speed not in DEPTH_SPEEDS:
            return f"depth speed must be one of {DEPTH_SPEEDS}, not {speed!r}"
        return ChannelState(channel, levels=levels)
    if channel in SNAPSHOT_CHANNELS:
        return ChannelState(channel, levels=INCR_DEPTH_LEVELS if channel == "incrDepth" else 0)
    return f"channel {channel!r} is not served"


def channel_message(
    feeds: SimulatedFeeds, symbol: str, state: ChannelState, now_ms: int
) -> dict | None:
    """The next push of a market channel at virtual time ``now_ms`` (None: nothing to push)."""
    data_type = f"{symbol}@{state.channel}"
    channel = state.channel
    if channel.startswith("depth"):
        book = feeds.depth(symbol, state.levels, now_ms)
        data: dict | None = {"bids": book["bids"], "asks": list(reversed(book["asks"]))}
    elif channel == "incrDepth":
        data = _incr_depth(feeds, symbol, state, now_ms)
    elif channel == "ticker":
        second = now_ms // 1000
        if state.last_second == second:
            return None
        state.last_second = second
        data = _ticker(feeds, symbol, now_ms)
    elif channel == "markPrice":
        mark = feeds.premium_index(symbol, now_ms)["markPrice"]
        data = {"e": "markPriceUpdate", "E": now_ms, "s": symbol, "p": mark}
    elif channel == "bookTicker":
        book = feeds.depth(symbol, 5, now_ms)
        state.update_id = now_ms if state.update_id is None else state.update_id + 1
        (bid, bid_qty), (ask, ask_qty) = book["bids"][0], book["asks"][0]
        data = {
            "e": "bookTicker", "u": state.update_id, "E": now_ms, "T": now_ms, "s": symbol,
            "b": bid, "B": bid_qty, "a": ask, "A": ask_qty,
        }  # fmt: skip
    elif channel == "lastPrice":
        pp = feeds.market.contract(symbol).price_precision
        price = f"{feeds.last_price(symbol, now_ms):.{pp}f}"
        data = {"e": "lastPriceUpdate", "E": now_ms, "s": symbol, "c": price}
    else:  # pragma: no cover - parse_channel admits nothing else
        raise ValueError(f"unknown channel {channel!r}")
    if data is None:
        return None
    return {"code": 0, "dataType": data_type, "ts": now_ms, "data": data}


def _incr_depth(
    feeds: SimulatedFeeds, symbol: str, state: ChannelState, now_ms: int
) -> dict | None:
    """The whole book on the first push, then the changed levels; ids step by one."""
    snapshot = feeds.depth(symbol, state.levels, now_ms)
    book = {side: dict((p, q) for p, q in snapshot[side]) for side in ("bids", "asks")}
    if state.update_id is None:
        # Ids continue across subscriptions (virtual ms at the first push, then +1 a push).
        state.update_id, state.book = now_ms, book
        return {"action": "all", "lastUpdateId": now_ms, **_sides(book)}
    changes = {}
    for side in ("bids", "asks"):
        before = state.book[side]
        after = book[side]
        changed = {p: q for p, q in after.items() if before.get(p) != q}
        changed.update({p: "0" for p in before if p not in after})
        changes[side] = changed
    if not changes["bids"] and not changes["asks"]:
        return None
    state.update_id += 1
    state.book = book
    return {"action": "update", "lastUpdateId": state.update_id, **_sides(changes)}


def _sides(book: dict[str, dict[str, str]]) -> dict[str, list[list[str]]]:
    bids = sorted(book["bids"].items(), key=lambda lv: float(lv[0]), reverse=True)
    asks = sorted(book["asks"].items(), key=lambda lv: float(lv[0]))
    return {"bids": [list(lv) for lv in bids], "asks": [list(lv) for lv in asks]}


def _ticker(feeds: SimulatedFeeds, symbol: str, now_ms: int) -> dict:
    """The ``@ticker`` push: the REST 24-hour ticker in the stream's one-letter fields."""
    t = feeds.ticker(symbol, now_ms)
    return {
        "e": "24hTicker", "E": now_ms, "s": symbol,
        "p": t["priceChange"], "P": t["priceChangePercent"].removesuffix("%"),
        "c": t["lastPrice"], "L": t["lastQty"], "h": t["highPrice"], "l": t["lowPrice"],
        "v": t["volume"], "q": t["quoteVolume"], "o": t["openPrice"],
        "O": int(t["openTime"]), "C": int(t["closeTime"]),
        "B": t["bidPrice"], "b": t["bidQty"], "A": t["askPrice"], "a": t["askQty"],
    }  # fmt: skip
