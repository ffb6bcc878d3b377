"""The simulated feeds beside candles: funding, mark/index, open interest, ticker, book, trades.

Everything is a pure function of (seed, symbol, time) on top of :class:`SimulatedMarket`, so a
value served twice is served the same, and every feed agrees with the candles:

* the premium ``p(t)`` is a slow seeded wave of a few basis points; the mark price is the last
  price times ``1 + p``, the index price the last price times ``1 - p`` (so mark > index exactly
  when the premium is positive), and mark-price klines are the candles scaled the same way;
* funding settles every ``funding_hours[symbol]`` hours (aligned to 00:00 UTC), at a small rate
  that follows the premium plus seeded noise; a symbol's interval may change mid-history (a
  schedule of ``(change_ms, hours)``). Like BingX, the funding history omits the interval: only
  the premium index states it (``fundingIntervalHours``, the interval of the period in
  progress);
* trades are drawn per minute (seeded count, times, sizes, sides) and priced on the candle's
  intraday path, so every trade lies within its candle; each has a fill id unique to its symbol
  and millisecond (no two trades of a symbol share one);
* the book is built around the last price with a seeded spread and sizes.

Records take BingX's wire shapes: numbers as strings, ``nextFundingTime`` and the ticker's
``openTime``/``closeTime``/``updateTime`` as strings, ``priceChangePercent`` with its ``%``,
the ticker's ``lastQty``, and the book's ``bidsCoin``/``asksCoin`` beside ``bids``/``asks``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, MINUTE_MS, SimulatedMarket

HOUR_MS = 3_600_000
DEFAULT_FUNDING_HOURS: Mapping[str, int] = {"XAUT-USDT": 8, "PAXG-USDT": 4}
_PREMIUM_AMPLITUDE = 4e-4
_PREMIUM_PERIOD_MS = 8 * HOUR_MS
_FUNDING_BASE = 1e-4
_OI_BASE = {"XAUT-USDT": 1500.0, "PAXG-USDT": 600.0}
_TRADES_PER_MINUTE = 40.0
_TRADE_LOOKBACK_MINUTES = 120  # how far back recent_trades looks for enough trades
_FUNDING_HOURS = (1, 2, 4, 8)
_BEGINNING = -(2**62)

FundingHours = int | Sequence[tuple[int, int]]
"""A symbol's funding interval: constant hours, or ``(change_ms, hours)`` pairs in time order.

In a schedule the first pair's hours hold from the beginning (its time is ignored); from each
later ``change_ms`` on, periods last the new hours. ``change_ms`` must be a settlement of the
old interval and lie on the new interval's grid (e.g. 8 h → 4 h at 16:00 UTC): the settlement
at ``change_ms`` still closes a period of the old length.
"""


def _segments(symbol: str, spec: FundingHours) -> list[tuple[int, int]]:
    """``[(segment_start_ms, hours)]`` of a funding spec, validated."""
    pairs = [(_BEGINNING, spec)] if isinstance(spec, int) else list(spec)
    if not pairs:
        raise ValueError(f"funding interval schedule of {symbol} is empty")
    segments: list[tuple[int, int]] = []
    for i, pair in enumerate(pairs):
        try:
            at, hours = int(pair[0]), pair[1]
        except (TypeError, ValueError, IndexError):
            raise ValueError(
                f"funding interval of {symbol} must be hours or (change_ms, hours) pairs, "
                f"got {spec!r}"
            ) from None
        if isinstance(hours, bool) or hours not in _FUNDING_HOURS:
            raise ValueError(
                f"funding interval of {symbol} must be 1, 2, 4 or 8 hours, got {hours!r}"
            )
        if i == 0:
            segments.append((_BEGINNING, hours))
            continue
        previous_start, previous_hours = segments[-1]
        if at <= previous_start or at % (previous_hours * HOUR_MS) or at % (hours * HOUR_MS):
            raise ValueError(
                f"funding interval change of {symbol} at {at} must come after the previous one "
                f"and be a settlement of both the {previous_hours} h and the {hours} h grid"
            )
        segments.append((at, hours))
    return segments


@dataclass(frozen=True)
class SimTrade:
    """One simulated trade.

    Attributes:
        time_ms: Trade time, epoch ms.
        price: Price.
        quantity: Base quantity.
        is_buyer_maker: True when the buyer was the maker.
        fill_id: BingX-style ``fillId``: a decimal string, deterministic and unique per trade
            (the symbol's contract index, then the millisecond).
    """

    time_ms: int
    price: float
    quantity: float
    is_buyer_maker: bool
    fill_id: str


class SimulatedFeeds:
    """Seeded feeds consistent with a :class:`SimulatedMarket`.

    Args:
        market: The candles everything else is derived from.
        funding_hours: Funding interval per symbol in hours (1, 2, 4 or 8); defaults to
            XAUT 8 h and PAXG 4 h.
    """

    def __init__(
        self, market: SimulatedMarket, funding_hours: Mapping[str, FundingHours] | None = None
    ) -> None:
        hours = dict(DEFAULT_FUNDING_HOURS if funding_hours is None else funding_hours)
        self._funding_segments: dict[str, list[tuple[int, int]]] = {}
        for symbol in market.symbols:
            if symbol not in hours:
                raise ValueError(
                    f"funding interval of {symbol} must be 1, 2, 4 or 8 hours, got None"
                )
            self._funding_segments[symbol] = _segments(symbol, hours[symbol])
        self.market = market
        self.funding_hours = hours

    def _rng(self, symbol: str, *key: int) -> np.random.Generator:
        index = self.market.contract(symbol).index
        return np.random.default_rng(np.random.SeedSequence([self.market.seed, index, *key]))

    def _round_price(self, symbol: str, price: float) -> float:
        scale = 10 ** self.market.contract(symbol).price_precision
        return round(price * scale) / scale

    # -- premium, mark and index ---------------------------------------------------------

    def premium(self, symbol: str, t_ms: int) -> float:
        """Premium of the perpetual over the index at ``t_ms`` (per minute), as a fraction."""
        index = self.market.contract(symbol).index
        phase = (self.market.seed * 0.7 + index * 1.9) % (2 * math.pi)
        minute = t_ms // MINUTE_MS * MINUTE_MS
        return _PREMIUM_AMPLITUDE * math.sin(2 * math.pi * minute / _PREMIUM_PERIOD_MS + phase)

    def last_price(self, symbol: str, now_ms: int) -> float:
        """Close of the 1m candle open at ``now_ms`` (its partial value)."""
        minute = now_ms // MINUTE_MS * MINUTE_MS
        return self.market.candle_at(symbol, minute, now_ms).close

    def mark_bars(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, now_ms: int
    ) -> list[Kline]:
        """Mark-price bars: candle prices times ``1 + premium`` at the bar's open, volume 0."""
        out = []
        for bar in self.market.bars(symbol, interval, start_ms, end_ms, now_ms):
            factor = 1.0 + self.premium(symbol, bar.open_time_ms)
            prices = (
                self._round_price(symbol, p * factor)
                for p in (bar.open, bar.high, bar.low, bar.close)
            )
            out.append(Kline(bar.open_time_ms, *prices, 0.0))
        return out

    def premium_index(self, symbol: str, now_ms: int) -> dict:
        """The ``premiumIndex`` record at ``now_ms``."""
        last = self.last_price(symbol, now_ms)
        p = self.premium(symbol, now_ms)
        hours = self._current_hours(symbol, now_ms)
        next_time = (now_ms // (hours * HOUR_MS) + 1) * hours * HOUR_MS
        pp = self.market.contract(symbol).price_precision
        return {
            "symbol": symbol,
            "markPrice": f"{self._round_price(symbol, last * (1.0 + p)):.{pp}f}",
            "indexPrice": f"{self._round_price(symbol, last * (1.0 - p)):.{pp}f}",
            "lastFundingRate": f"{self.funding_rate(symbol, next_time):.6f}",
            "nextFundingTime": str(next_time),  # BingX sends this time as a string
            "fundingIntervalHours": hours,
            "time": now_ms,
            "updateTime": now_ms,
        }

    # -- funding -------------------------------------------------------------------------

    def funding_interval_hours(self, symbol: str, settlement_ms: int) -> int:
        """Length in hours of the funding period that settles at ``settlement_ms``."""
        segments = self._funding_segments[symbol]
        return next(h for start, h in reversed(segments) if start < settlement_ms)

    def _current_hours(self, symbol: str, now_ms: int) -> int:
        segments = self._funding_segments[symbol]
        return next(h for start, h in reversed(segments) if start <= now_ms)

    def funding_rate(self, symbol: str, funding_time_ms: int) -> float:
        """Rate settled at ``funding_time_ms``: follows the premium, plus seeded noise."""
        noise = self._rng(symbol, 101, funding_time_ms // MINUTE_MS).normal(0.0, 2e-5)
        rate = _FUNDING_BASE + 0.25 * self.premium(symbol, funding_time_ms - HOUR_MS) + noise
        return round(min(max(rate, -0.003), 0.003), 6)

    def funding_times(self, symbol: str, start_ms: int, end_ms: int) -> list[int]:
        """Settlement times ``start_ms <= t < end_ms`` after listing, across interval changes."""
        segments = self._funding_segments[symbol]
        lower = max(start_ms, self.market.genesis_ms + 1)
        times: list[int] = []
        for i, (seg_start, hours) in enumerate(segments):
            step = hours * HOUR_MS
            # Settlements of this segment: (seg_start, next segment's start] on its grid.
            seg_end = segments[i + 1][0] + 1 if i + 1 < len(segments) else end_ms
            lo, hi = max(lower, seg_start + 1), min(end_ms, seg_end)
            first = -(-lo // step) * step
            times.extend(range(first, hi, step))
        return times

    # -- open interest -------------------------------------------------------------------

    def open_interest(self, symbol: str, now_ms: int) -> float:
        """Open interest at ``now_ms``: a slow wave around a base plus per-minute noise."""
        index = self.market.contract(symbol).index
        wave = math.sin(2 * math.pi * now_ms / (3 * DAY_MS) + index)
        noise = self._rng(symbol, 103, now_ms // MINUTE_MS).normal(0.0, 0.01)
        qp = self.market.contract(symbol).quantity_precision
        return round(_OI_BASE[symbol] * (1.0 + 0.15 * wave) * (1.0 + noise), qp)

    # -- ticker --------------------------------------------------------------------------

    def ticker(self, symbol: str, now_ms: int) -> dict:
        """The 24-hour ticker record at ``now_ms`` (window ``[now - 24 h, now]``)."""
        contract = self.market.contract(symbol)
        pp = contract.price_precision
        bars = self.market.bars(symbol, "1m", now_ms - DAY_MS, now_ms + 1, now_ms)
        if not bars:
            raise ValueError(f"{symbol} has no trades before {now_ms}")
        open_, last = bars[0].open, bars[-1].close
        change = last - open_
        book = self.depth(symbol, 5, now_ms)
        last_trade = self.recent_trades(symbol, 1, now_ms)
        last_qty = last_trade[-1].quantity if last_trade else 0.0
        qp = contract.quantity_precision
        return {
            "symbol": symbol,
            "priceChange": f"{change:.{pp}f}",
            "priceChangePercent": f"{change / open_ * 100.0:.3f}%",  # BingX: "0.31%"
            "lastPrice": f"{last:.{pp}f}",
            "lastQty": f"{last_qty:.{qp}f}",
            "highPrice": f"{max(b.high for b in bars):.{pp}f}",
            "lowPrice": f"{min(b.low for b in bars):.{pp}f}",
            "volume": f"{sum(b.volume for b in bars):.{qp}f}",
            "quoteVolume": f"{sum(b.volume * b.close for b in bars):.2f}",
            "openPrice": f"{open_:.{pp}f}",
            "openTime": str(now_ms - DAY_MS),  # BingX sends these times as strings
            "closeTime": str(now_ms),
            "updateTime": str(now_ms),
            "bidPrice": book["bids"][0][0],
            "bidQty": book["bids"][0][1],
            "askPrice": book["asks"][0][0],
            "askQty": book["asks"][0][1],
        }

    # -- order book ----------------------------------------------------------------------

    def depth(self, symbol: str, limit: int, now_ms: int) -> dict:
        """A book of ``limit`` levels per side around the last price (seeded per second)."""
        contract = self.market.contract(symbol)
        pp, qp = contract.price_precision, contract.quantity_precision
        tick = 10**pp
        last = round(self.last_price(symbol, now_ms) * tick)
        rng = self._rng(symbol, 107, now_ms // 1000)
        below = int(rng.integers(0, 2))  # the last price sits at the bid or inside the spread
        best_bid = last - below
        best_ask = best_bid + 1 + int(rng.integers(0, 3))
        bid_gaps = 1 + rng.poisson(0.3, limit)
        ask_gaps = 1 + rng.poisson(0.3, limit)
        bids = best_bid - np.concatenate(([0], np.cumsum(bid_gaps[:-1])))
        asks = best_ask + np.concatenate(([0], np.cumsum(ask_gaps[:-1])))
        lots = 10**qp
        size = contract.base_volume / 10.0 * lots
        bid_qty = np.maximum(np.rint(rng.lognormal(np.log(size), 0.8, limit)), 1)
        ask_qty = np.maximum(np.rint(rng.lognormal(np.log(size), 0.8, limit)), 1)

        def side(prices: np.ndarray, qty: np.ndarray) -> list[list[str]]:
            return [
                [f"{p / tick:.{pp}f}", f"{q / lots:.{qp}f}"]
                for p, q in zip(prices.tolist(), qty.tolist(), strict=True)
                if p > 0
            ]

        bid_levels, ask_levels = side(bids, bid_qty), side(asks, ask_qty)
        # BingX adds the levels with quantities in coin units; the simulated quantities are
        # coin (base) units already, so those lists repeat the levels.
        return {
            "T": now_ms,
            "bids": bid_levels,
            "asks": ask_levels,
            "bidsCoin": [list(level) for level in bid_levels],
            "asksCoin": [list(level) for level in ask_levels],
        }

    # -- trades --------------------------------------------------------------------------

    def _minute_trades(self, symbol: str, minute_ms: int) -> list[SimTrade]:
        if minute_ms < self.market.genesis_ms:
            return []
        contract = self.market.contract(symbol)
        rng = self._rng(symbol, 109, minute_ms // MINUTE_MS)
        count = int(rng.poisson(_TRADES_PER_MINUTE))
        # Distinct milliseconds: two trades never share a time, so content keys stay unique.
        offsets = np.sort(rng.choice(MINUTE_MS, size=count, replace=False))
        lots = 10**contract.quantity_precision
        mean = contract.base_volume / _TRADES_PER_MINUTE * lots
        quantities = np.maximum(np.rint(rng.lognormal(np.log(mean), 1.0, count)), 1) / lots
        makers = rng.random(count) < 0.5
        times = minute_ms + offsets.astype(np.int64)
        prices = self.market.prices_at(symbol, times)
        prefix = contract.index + 1
        return [
            SimTrade(int(t), float(p), float(q), bool(m), f"{prefix}{int(t):015d}")
            for t, p, q, m in zip(times, prices, quantities, makers, strict=True)
        ]

    def trades_between(self, symbol: str, after_ms: int, until_ms: int) -> list[SimTrade]:
        """Trades with ``after_ms < time <= until_ms``, oldest first."""
        out: list[SimTrade] = []
        minute = max(after_ms + 1, self.market.genesis_ms) // MINUTE_MS * MINUTE_MS
        while minute <= until_ms:
            out += [
                t for t in self._minute_trades(symbol, minute) if after_ms < t.time_ms <= until_ms
            ]
            minute += MINUTE_MS
        return out

    def recent_trades(self, symbol: str, limit: int, now_ms: int) -> list[SimTrade]:
        """The latest ``limit`` trades at or before ``now_ms``, oldest first."""
        found: list[SimTrade] = []
        minute = now_ms // MINUTE_MS * MINUTE_MS
        for _ in range(_TRADE_LOOKBACK_MINUTES):
            if minute < self.market.genesis_ms or len(found) >= limit:
                break
            found = [t for t in self._minute_trades(symbol, minute) if t.time_ms <= now_ms] + found
            minute -= MINUTE_MS
        return found[-limit:]
