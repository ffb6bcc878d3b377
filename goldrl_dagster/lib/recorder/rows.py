"""Records of the market streams as rows of the recorder's tables (migration 0022)."""

from __future__ import annotations

from goldrl_dagster.lib.bingx.market_models import (
    BookSnapshot,
    BookTickerUpdate,
    MarkPriceUpdate,
)
from goldrl_dagster.lib.bingx.models import Kline, Ticker24h, Trade
from goldrl_dagster.lib.bingx.models import _utc as utc  # epoch ms -> aware UTC, exactly


def trade_row(trade: Trade, occurrence: int) -> tuple:
    """A ``stream_trades`` row; ``occurrence`` numbers trades of the same content from 1."""
    source = "push" if trade.fill_id is None else "rest"
    return (
        trade.symbol, trade.content_key, occurrence, utc(trade.time_ms), trade.price,
        trade.quantity, trade.is_buyer_maker, trade.fill_id, source,
    )  # fmt: skip


def kline_row(symbol: str, interval: str, kline: Kline) -> tuple:
    """A ``stream_klines`` row."""
    return (
        symbol, interval, utc(kline.open_time_ms), kline.open, kline.high, kline.low,
        kline.close, kline.volume,
    )  # fmt: skip


def book_row(book: BookSnapshot) -> tuple:
    """A ``stream_book`` row (levels as ``[[price, qty], …]``, best first)."""
    return (
        book.symbol, book.channel, utc(book.time_ms), book.update_id, book.best_bid,
        book.best_ask, [list(lv) for lv in book.bids], [list(lv) for lv in book.asks],
    )  # fmt: skip


def ticker_row(t: Ticker24h) -> tuple:
    """A ``stream_tickers`` row (the table keeps no best bid/ask quantities)."""
    return (
        t.symbol, utc(t.time_ms), t.last_price, t.open_price, t.high_price, t.low_price,
        t.volume, t.quote_volume, t.price_change_percent, t.bid_price, t.ask_price,
    )  # fmt: skip


def mark_row(m: MarkPriceUpdate) -> tuple:
    """A ``stream_mark_prices`` row."""
    return (m.symbol, utc(m.time_ms), m.mark_price)


def book_ticker_row(b: BookTickerUpdate) -> tuple:
    """A ``stream_book_tickers`` row."""
    return (b.symbol, utc(b.time_ms), b.update_id, b.bid_price, b.bid_qty, b.ask_price, b.ask_qty)


def gap_row(
    symbol: str, channel: str, start_ms: int, end_ms: int, reason: str, detail: str = ""
) -> tuple:
    """A ``stream_gaps`` row."""
    return (symbol, channel, utc(start_ms), utc(max(start_ms, end_ms)), reason, detail)
