"""The simulator's exchange: accounts, a matching engine, margin, fees and funding.

Accounts hold a USDT wallet, per-symbol leverage and margin type, a position mode (hedge by
default, as BingX's) and positions. Orders match against the simulated market:

* MARKET and marketable LIMIT orders walk the simulated order book (``feeds.depth``) level by
  level, so a large order fills at several prices; what the book cannot fill expires (market,
  IOC) or rests (GTC). FOK fills entirely or expires; PostOnly expires rather than take.
* Resting LIMIT orders fill over time from the simulated public trade tape: a trade at or
  through the limit fills up to its size at the limit price (maker fee), so big orders fill
  partially across several trades.
* Reduce-only orders are capped at the position they reduce and refused when there is none.
* Margin: the initial margin of the exposure an order adds (notional / leverage) plus its fee
  must fit in the available margin (wallet + unrealised PnL − position margin − order margin).
* Funding settles at the feed's funding times on every open position at the mark price.

Liquidation is not modelled. Every change is also an event in BingX's account-stream shape
(``ORDER_TRADE_UPDATE``, ``ACCOUNT_UPDATE``, ``ACCOUNT_CONFIG_UPDATE``), handed to the
listeners of the account (the account-stream connections). Quantities and money are exact
decimals; everything is guarded by one lock (REST handlers run in a thread pool).
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.simulator.feeds import SimulatedFeeds
from goldrl_dagster.lib.bingx.simulator.market import SimContract, SimulatedMarket
from goldrl_dagster.lib.execution.ledger import Position, apply_fill, funding_payment

FIRST_ORDER_ID = 1_901_234_567_890_123_457  # above 2^53, like BingX's 19-digit ids
DEFAULT_LEVERAGE = 5
DEFAULT_BALANCE = Decimal("10000")
BOOK_LEVELS = 100
LISTEN_KEY_TTL_S = 3600.0
ZERO = Decimal(0)
# BingX reports fill times in UTC+8 (ISO-8601 with the offset).
_FILL_TZ = timezone(timedelta(hours=8))

# Error codes the simulator answers with (BingX's).
INVALID_PARAMETER = 109400
INSUFFICIENT_MARGIN = 80012
MIN_QUANTITY = 101400
MIN_NOTIONAL = 110425
NO_POSITION_TO_CLOSE = 101205
DUPLICATE_CLIENT_ID = 101481
ORDER_NOT_FOUND = 80016
UNKNOWN_SYMBOL = 109425

Listener = Callable[[dict], None]


class SimReject(Exception):
    """A business error answered as ``{"code": code, "msg": msg}``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _fmt(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}" if places >= 0 else str(value)


def _money(value: Decimal) -> str:
    return _fmt(value, 8)


def _decimal(params: dict[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise SimReject(INVALID_PARAMETER, f"{name} must be a number, got {raw!r}") from None
    if not value.is_finite():
        raise SimReject(INVALID_PARAMETER, f"{name} must be finite, got {raw!r}")
    return value


def _places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


@dataclass
class SimFill:
    """One execution."""

    order_id: str
    symbol: str
    price: Decimal
    quantity: Decimal
    commission: Decimal  # negative: paid
    time_ms: int
    maker: bool


@dataclass
class SimOrder:
    """One order and its fills."""

    order_id: str
    client_order_id: str
    symbol: str
    side: str
    position_side: str
    type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal
    reduce_only: bool
    time_ms: int
    status: str = "NEW"
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    commission: Decimal = ZERO
    realised: Decimal = ZERO
    update_ms: int = 0
    matched_until_ms: int = 0  # trade-tape time this resting order has been matched up to
    stop_loss: str | None = None
    take_profit: str | None = None
    fills: list[SimFill] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        """Quantity still to fill."""
        return self.quantity - self.executed

    @property
    def is_open(self) -> bool:
        """Whether it can still fill."""
        return self.status in ("NEW", "PARTIALLY_FILLED")

    @property
    def sign(self) -> int:
        """+1 for BUY, -1 for SELL."""
        return 1 if self.side == "BUY" else -1


@dataclass
class SimPosition:
    """A position: signed quantity (LONG side >= 0, SHORT side <= 0, BOTH either)."""

    symbol: str
    side: str
    quantity: Decimal = ZERO
    entry_price: Decimal = ZERO
    realised: Decimal = ZERO
    update_ms: int = 0


@dataclass
class SimAccount:
    """One API key's swap account."""

    api_key: str
    credentials: Credentials  # verifies signatures; never shows the secret
    balance: Decimal
    dual_side: bool
    user_id: str
    leverage: dict[str, list[int]] = field(default_factory=dict)  # symbol -> [long, short]
    margin_type: dict[str, str] = field(default_factory=dict)
    positions: dict[tuple[str, str], SimPosition] = field(default_factory=dict)
    orders: dict[str, SimOrder] = field(default_factory=dict)
    by_client_id: dict[str, str] = field(default_factory=dict)
    income: list[dict] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)


class SimExchange:
    """Accounts and matching for the simulator (thread-safe).

    Args:
        market: Candles (and the contracts' rules).
        feeds: Order book, trade tape, mark prices and funding.
        now_ms: The virtual clock.
    """

    def __init__(
        self, market: SimulatedMarket, feeds: SimulatedFeeds, now_ms: Callable[[], int]
    ) -> None:
        self.market = market
        self.feeds = feeds
        self.now_ms = now_ms
        self.lock = threading.RLock()
        self.accounts: dict[str, SimAccount] = {}
        self.listen_keys: dict[str, tuple[str, float]] = {}  # key -> (api key, expiry)
        self._order_ids = itertools.count(FIRST_ORDER_ID)
        self._tran_ids = itertools.count(1)
        self._settled_until_ms = now_ms()
        self._user_ids = itertools.count(10_000_001)

    # -- accounts -------------------------------------------------------------------------

    def create_account(
        self,
        api_key: str,
        secret: str,
        *,
        balance: Decimal | str | int = DEFAULT_BALANCE,
        hedge_mode: bool = True,
    ) -> SimAccount:
        """Open an account (BingX's default is hedge mode).

        Raises:
            ValueError: If the key is taken or the key or secret is malformed.
        """
        return self.open_account(
            Credentials(api_key, secret), balance=balance, hedge_mode=hedge_mode
        )

    def open_account(
        self,
        credentials: Credentials,
        *,
        balance: Decimal | str | int = DEFAULT_BALANCE,
        hedge_mode: bool = True,
    ) -> SimAccount:
        """Open an account for existing credentials (e.g. read from the environment).

        Raises:
            ValueError: If an account with this key exists already.
        """
        api_key = credentials.api_key
        with self.lock:
            if api_key in self.accounts:
                raise ValueError("an account with this API key exists already")
            account = SimAccount(
                api_key, credentials, Decimal(str(balance)), hedge_mode, str(next(self._user_ids))
            )
            for symbol in self.market.symbols:
                account.leverage[symbol] = [DEFAULT_LEVERAGE, DEFAULT_LEVERAGE]
                account.margin_type[symbol] = "CROSSED"
            self.accounts[api_key] = account
            return account

    def account(self, api_key: str) -> SimAccount | None:
        """The account of an API key, if any."""
        return self.accounts.get(api_key)

    def add_listener(self, account: SimAccount, listener: Listener) -> None:
        """Receive the account's events (called from any thread)."""
        with self.lock:
            account.listeners.append(listener)

    def remove_listener(self, account: SimAccount, listener: Listener) -> None:
        """Stop receiving the account's events."""
        with self.lock:
            if listener in account.listeners:
                account.listeners.remove(listener)

    def _emit(self, account: SimAccount, event: dict) -> None:
        for listener in list(account.listeners):
            listener(event)

    # -- listen keys (real time: a key lives an hour of wall-clock time) -------------------

    def create_listen_key(self, account: SimAccount, ttl_s: float = LISTEN_KEY_TTL_S) -> str:
        """A new account-stream key."""
        key = secrets.token_hex(32)
        with self.lock:
            self.listen_keys[key] = (account.api_key, time.monotonic() + ttl_s)
        return key

    def extend_listen_key(self, key: str, ttl_s: float = LISTEN_KEY_TTL_S) -> bool:
        """Extend a live key; False when unknown or expired."""
        with self.lock:
            entry = self.listen_keys.get(key)
            if entry is None or entry[1] <= time.monotonic():
                return False
            self.listen_keys[key] = (entry[0], time.monotonic() + ttl_s)
            return True

    def delete_listen_key(self, key: str) -> bool:
        """Forget a key; False when unknown."""
        with self.lock:
            return self.listen_keys.pop(key, None) is not None

    def listen_key_account(self, key: str) -> tuple[SimAccount, float] | None:
        """The account and expiry (monotonic seconds) of a live key."""
        with self.lock:
            entry = self.listen_keys.get(key)
            if entry is None or entry[1] <= time.monotonic():
                return None
            return self.accounts[entry[0]], entry[1]

    # -- prices ---------------------------------------------------------------------------

    def check_symbol(self, symbol: str | None) -> SimContract:
        """The contract of a listed symbol.

        Raises:
            SimReject: 109400 without a symbol, 109425 for an unlisted one.
        """
        if not symbol:
            raise SimReject(INVALID_PARAMETER, "symbol is required")
        if symbol not in self.market.symbols:
            raise SimReject(UNKNOWN_SYMBOL, f"{symbol} not exist, please verify it")
        return self.market.contract(symbol)

    def book(self, symbol: str, now: int) -> tuple[list, list]:
        """The simulated order book at ``now``: (bids, asks) as (price, size), best first."""
        book = self.feeds.depth(symbol, BOOK_LEVELS, now)
        bids = [(Decimal(p), Decimal(q)) for p, q in book["bids"]]
        asks = [(Decimal(p), Decimal(q)) for p, q in book["asks"]]
        return bids, asks

    def mark_price(self, symbol: str, now: int) -> Decimal:
        """The mark price at ``now``."""
        return Decimal(self.feeds.premium_index(symbol, now)["markPrice"])

    # -- time passes --------------------------------------------------------------------

    def advance(self, now: int | None = None) -> None:
        """Settle funding and fill resting orders from the trade tape up to ``now``."""
        now = self.now_ms() if now is None else now
        with self.lock:
            if now <= self._settled_until_ms:
                return
            since, self._settled_until_ms = self._settled_until_ms, now
            if not self.accounts:
                return  # a market-data-only simulator: nothing to settle or match
            for account in self.accounts.values():
                for order in [o for o in account.orders.values() if o.is_open]:
                    self._match_resting(account, order, now)
            for symbol in self.market.symbols:
                for t in self.feeds.funding_times(symbol, since + 1, now + 1):
                    self._settle_funding(symbol, t)

    def _match_resting(self, account: SimAccount, order: SimOrder, now: int) -> None:
        start = max(order.matched_until_ms, order.time_ms)
        if order.type != "LIMIT" or now <= start:
            return
        for trade in self.feeds.trades_between(order.symbol, start, now):
            price = Decimal(str(trade.price))
            crosses = price <= order.price if order.side == "BUY" else price >= order.price
            if not crosses:
                continue
            quantity = min(order.remaining, Decimal(str(trade.quantity)))
            if order.reduce_only:
                quantity = min(quantity, self._reducible(account, order))
            if quantity <= 0:
                break
            self._execute(account, order, [(order.price, quantity)], trade.time_ms, maker=True)
            if not order.is_open:
                break
        order.matched_until_ms = now

    def _settle_funding(self, symbol: str, funding_ms: int) -> None:
        rate = Decimal(f"{self.feeds.funding_rate(symbol, funding_ms):.6f}")
        mark = self.mark_price(symbol, funding_ms)
        for account in self.accounts.values():
            for position in [p for p in account.positions.values() if p.symbol == symbol]:
                if position.quantity == 0:
                    continue
                payment = funding_payment(  # > 0: this side pays
                    Position(position.quantity, position.entry_price), mark, rate
                )
                account.balance -= payment
                account.income.append(
                    {
                        "symbol": symbol,
                        "incomeType": "FUNDING_FEE",
                        "income": _money(-payment),
                        "asset": "USDT",
                        "info": "Funding Fee",
                        "time": funding_ms,
                        "tranId": f"{next(self._tran_ids)}",
                        "tradeId": "",
                    }
                )
                self._emit(account, self._account_event(account, "FUNDING_FEE", -payment))

    # -- orders ---------------------------------------------------------------------------

    def place(self, account: SimAccount, params: dict[str, str], *, test: bool = False) -> SimOrder:
        """Validate and (unless ``test``) place and match an order.

        Raises:
            SimReject: With BingX's code for every refusal.
        """
        now = self.now_ms()
        with self.lock:
            self.advance(now)
            order = self._new_order(account, params, now)
            if test:
                return order
            account.orders[order.order_id] = order
            account.by_client_id[order.client_order_id] = order.order_id
            self._emit(account, self._order_event(order, "NEW"))
            self._match_incoming(account, order, now)
            return order

    def _new_order(self, account: SimAccount, params: dict[str, str], now: int) -> SimOrder:
        symbol = params.get("symbol")
        contract = self.check_symbol(symbol)
        side = (params.get("side") or "").upper()
        if side not in ("BUY", "SELL"):
            raise SimReject(INVALID_PARAMETER, f"side must be BUY or SELL, got {side!r}")
        kind = (params.get("type") or "").upper()
        if kind not in ("MARKET", "LIMIT"):
            raise SimReject(INVALID_PARAMETER, f"type {kind!r} is not supported by the simulator")
        position_side = (params.get("positionSide") or "BOTH").upper()
        if account.dual_side and position_side not in ("LONG", "SHORT"):
            raise SimReject(
                INVALID_PARAMETER,
                "positionSide must be LONG or SHORT in hedge mode (dualSidePosition=true)",
            )
        if not account.dual_side and position_side != "BOTH":
            raise SimReject(INVALID_PARAMETER, "positionSide must be BOTH in one-way mode")
        quantity = _decimal(params, "quantity")
        if quantity is None or quantity <= 0:
            raise SimReject(INVALID_PARAMETER, "quantity is required and must be > 0")
        if _places(quantity) > contract.quantity_precision:
            raise SimReject(
                INVALID_PARAMETER,
                f"quantity {quantity} has more than {contract.quantity_precision} decimals",
            )
        price = _decimal(params, "price") or ZERO
        tif = params.get("timeInForce") or ("GTC" if kind == "LIMIT" else "")
        if kind == "LIMIT":
            if price <= 0:
                raise SimReject(INVALID_PARAMETER, "price is required for LIMIT orders")
            if _places(price) > contract.price_precision:
                raise SimReject(
                    INVALID_PARAMETER,
                    f"price {price} has more than {contract.price_precision} decimals",
                )
            if tif not in ("GTC", "IOC", "FOK", "PostOnly"):
                raise SimReject(INVALID_PARAMETER, f"timeInForce {tif!r} is not supported")
        reduce_only = (params.get("reduceOnly") or "false").lower() == "true"
        client_id = (params.get("clientOrderId") or "").lower()
        if client_id and not 1 <= len(client_id) <= 40:
            raise SimReject(INVALID_PARAMETER, "clientOrderId must be 1-40 characters")
        if client_id and client_id in account.by_client_id:
            raise SimReject(DUPLICATE_CLIENT_ID, f"clientOrderId {client_id} already exists")
        order = SimOrder(
            order_id=str(next(self._order_ids)),
            client_order_id=client_id,
            symbol=str(symbol),
            side=side,
            position_side=position_side,
            type=kind,
            time_in_force=tif,
            quantity=quantity,
            price=price,
            reduce_only=reduce_only,
            time_ms=now,
            update_ms=now,
            matched_until_ms=now,
            stop_loss=params.get("stopLoss"),
            take_profit=params.get("takeProfit"),
        )
        self._check_sides(account, order)
        reference = self._reference_price(order, now)
        if reduce_only:
            if self._reducible(account, order) <= 0:
                raise SimReject(NO_POSITION_TO_CLOSE, "No position to close")
        else:
            minimum = Decimal(contract.min_quantity)
            if quantity < minimum:
                raise SimReject(
                    MIN_QUANTITY, f"The minimum order amount is {minimum} {contract.asset}."
                )
            notional_min = Decimal(contract.min_notional)
            if quantity * reference < notional_min:
                raise SimReject(
                    MIN_NOTIONAL,
                    "Please ensure that the minimum nominal value of the order placed must be "
                    f"greater than {notional_min}u",
                )
        self._check_margin(account, order, reference, now)
        return order

    def _check_sides(self, account: SimAccount, order: SimOrder) -> None:
        """Hedge mode: no reduceOnly, and a close (SELL LONG, BUY SHORT) needs the position."""
        if not account.dual_side:
            return
        if order.reduce_only:
            raise SimReject(
                INVALID_PARAMETER,
                "reduceOnly is not accepted in hedge mode: close with positionSide",
            )
        closing = (order.side == "SELL") == (order.position_side == "LONG")
        if closing and self._reducible(account, order) < order.quantity:
            raise SimReject(NO_POSITION_TO_CLOSE, "No position to close")

    def _reference_price(self, order: SimOrder, now: int) -> Decimal:
        if order.type == "LIMIT":
            return order.price
        bids, asks = self.book(order.symbol, now)
        return asks[0][0] if order.side == "BUY" else bids[0][0]

    def _position(self, account: SimAccount, symbol: str, side: str) -> SimPosition:
        key = (symbol, side)
        if key not in account.positions:
            account.positions[key] = SimPosition(symbol, side)
        return account.positions[key]

    def _reducible(self, account: SimAccount, order: SimOrder) -> Decimal:
        """How much of the order reduces an existing position."""
        position = self._position(account, order.symbol, order.position_side)
        if position.quantity == 0 or (position.quantity > 0) == (order.sign > 0):
            return ZERO
        return min(order.remaining, abs(position.quantity))

    def _exposure_added(self, account: SimAccount, order: SimOrder) -> Decimal:
        position = self._position(account, order.symbol, order.position_side)
        current = position.quantity
        after = current + order.sign * order.remaining
        return max(ZERO, abs(after) - abs(current))

    def _used_margin(self, account: SimAccount, now: int) -> tuple[Decimal, Decimal, Decimal]:
        """(position margin, order margin, unrealised PnL) of the account."""
        position_margin = unrealised = ZERO
        for position in account.positions.values():
            if position.quantity == 0:
                continue
            mark = self.mark_price(position.symbol, now)
            lev = account.leverage[position.symbol][0 if position.quantity > 0 else 1]
            position_margin += abs(position.quantity) * mark / lev
            unrealised += (mark - position.entry_price) * position.quantity
        order_margin = ZERO
        for order in account.orders.values():
            if order.is_open and not order.reduce_only:
                lev = account.leverage[order.symbol][0 if order.side == "BUY" else 1]
                order_margin += order.remaining * order.price / lev
        return position_margin, order_margin, unrealised

    def _check_margin(self, account: SimAccount, order: SimOrder, price: Decimal, now: int) -> None:
        added = self._exposure_added(account, order)
        if added == 0:
            return
        lev = account.leverage[order.symbol][0 if order.side == "BUY" else 1]
        needed = added * price / lev + added * price * self.fee_rate(order.symbol, maker=False)
        position_margin, order_margin, unrealised = self._used_margin(account, now)
        available = account.balance + min(unrealised, ZERO) - position_margin - order_margin
        if needed > available:
            raise SimReject(
                INSUFFICIENT_MARGIN,
                f'{{"Code":101253,"Msg":"margin is not enough: need {needed:.4f} USDT, '
                f'available {available:.4f} USDT"}}',
            )

    def _match_incoming(self, account: SimAccount, order: SimOrder, now: int) -> None:
        bids, asks = self.book(order.symbol, now)
        levels = asks if order.side == "BUY" else bids
        if order.type == "LIMIT":
            levels = [
                (p, q)
                for p, q in levels
                if (p <= order.price if order.side == "BUY" else p >= order.price)
            ]
            if order.time_in_force == "PostOnly" and levels:
                self._close(account, order, "EXPIRED", now)
                return
        wanted = order.remaining
        if order.reduce_only:
            wanted = self._reducible(account, order)
            if wanted < order.remaining:
                order.quantity = order.executed + wanted  # capped at the position
        takes: list[tuple[Decimal, Decimal]] = []
        left = wanted
        for price, size in levels:
            if left <= 0:
                break
            take = min(left, size)
            takes.append((price, take))
            left -= take
        if order.time_in_force == "FOK" and left > 0:
            self._close(account, order, "EXPIRED", now)
            return
        if takes:
            self._execute(account, order, takes, now, maker=False)
        if order.is_open and (order.type == "MARKET" or order.time_in_force == "IOC"):
            self._close(
                account, order, "EXPIRED" if order.executed < order.quantity else "FILLED", now
            )

    def _execute(
        self,
        account: SimAccount,
        order: SimOrder,
        takes: list[tuple[Decimal, Decimal]],
        when: int,
        *,
        maker: bool,
    ) -> None:
        rate = self.fee_rate(order.symbol, maker=maker)
        position = self._position(account, order.symbol, order.position_side)
        realised_total = ZERO
        fee_total = ZERO
        for price, quantity in takes:
            fee = (price * quantity * rate).quantize(Decimal("1e-8"))
            effect = apply_fill(
                Position(position.quantity, position.entry_price), order.side, quantity, price
            )
            position.quantity = effect.position.quantity
            position.entry_price = effect.position.entry_price
            position.realised += effect.realised_pnl
            realised = effect.realised_pnl
            realised_total += realised
            fee_total += fee
            order.executed += quantity
            order.cum_quote += price * quantity
            order.commission -= fee
            order.realised += realised
            order.fills.append(
                SimFill(order.order_id, order.symbol, price, quantity, -fee, when, maker)
            )
            position.update_ms = when
        account.balance += realised_total - fee_total
        order.status = "FILLED" if order.executed >= order.quantity else "PARTIALLY_FILLED"
        order.update_ms = when
        for kind, amount in (("REALIZED_PNL", realised_total), ("TRADING_FEE", -fee_total)):
            if amount != 0:
                account.income.append(
                    {
                        "symbol": order.symbol,
                        "incomeType": kind,
                        "income": _money(amount),
                        "asset": "USDT",
                        "info": kind.replace("_", " ").title(),
                        "time": when,
                        "tranId": f"{next(self._tran_ids)}",
                        "tradeId": order.order_id,
                    }
                )
        self._emit(account, self._order_event(order, "TRADE"))
        self._emit(account, self._account_event(account, "ORDER", realised_total - fee_total))

    def _close(self, account: SimAccount, order: SimOrder, status: str, now: int) -> None:
        order.status = status
        order.update_ms = now
        self._emit(account, self._order_event(order, status))

    def find(
        self, account: SimAccount, symbol: str | None, order_id: str | None, client_id: str | None
    ) -> SimOrder:
        """An order by exchange id or client id.

        Raises:
            SimReject: 80016 when there is no such order.
        """
        self.check_symbol(symbol)
        if not order_id and not client_id:
            raise SimReject(INVALID_PARAMETER, "orderId or clientOrderId is required")
        if not order_id:
            order_id = account.by_client_id.get(str(client_id).lower())
        order = account.orders.get(str(order_id)) if order_id else None
        if order is None or order.symbol != symbol:
            raise SimReject(ORDER_NOT_FOUND, "order not exist")
        return order

    def cancel(
        self,
        account: SimAccount,
        symbol: str | None,
        order_id: str | None,
        client_id: str | None,
        *,
        fill_first: bool = False,
    ) -> SimOrder:
        """Cancel an open order.

        Args:
            account: The account.
            symbol: The order's symbol.
            order_id: Exchange id (or None).
            client_id: Client id (or None).
            fill_first: Fault injection: the order fills completely just before the cancel
                arrives (a late fill), and the cancel is answered "order not exist".

        Raises:
            SimReject: 80016 when the order does not exist or can no longer be cancelled.
        """
        now = self.now_ms()
        with self.lock:
            self.advance(now)
            order = self.find(account, symbol, order_id, client_id)
            if fill_first and order.is_open:
                self._execute(account, order, [(order.price, order.remaining)], now, maker=True)
            if not order.is_open:
                raise SimReject(ORDER_NOT_FOUND, "order not exist")
            self._close(account, order, "CANCELLED", now)
            return order

    def cancel_all(self, account: SimAccount, symbol: str | None) -> list[SimOrder]:
        """Cancel every open order of a symbol."""
        now = self.now_ms()
        with self.lock:
            self.advance(now)
            self.check_symbol(symbol)
            out = []
            for order in account.orders.values():
                if order.symbol == symbol and order.is_open:
                    self._close(account, order, "CANCELLED", now)
                    out.append(order)
            return out

    # -- settings -------------------------------------------------------------------------

    def _busy(self, account: SimAccount, symbol: str | None = None) -> bool:
        has_position = any(
            p.quantity != 0 and (symbol is None or p.symbol == symbol)
            for p in account.positions.values()
        )
        has_order = any(
            o.is_open and (symbol is None or o.symbol == symbol) for o in account.orders.values()
        )
        return has_position or has_order

    def set_dual_side(self, account: SimAccount, dual: bool) -> None:
        """Switch the position mode (refused with open positions or orders)."""
        with self.lock:
            if dual != account.dual_side and self._busy(account):
                raise SimReject(
                    INVALID_PARAMETER,
                    "position mode cannot be changed with open positions or orders",
                )
            account.dual_side = dual

    def set_leverage(self, account: SimAccount, symbol: str | None, side: str, raw: str) -> int:
        """Set leverage for one side (or both in one-way mode)."""
        contract_row = self.contract_row(symbol)
        try:
            value = Decimal(raw)
        except ArithmeticError:
            raise SimReject(
                INVALID_PARAMETER, f"leverage must be an integer, got {raw!r}"
            ) from None
        if not value.is_finite() or value != value.to_integral_value() or value < 1:
            raise SimReject(INVALID_PARAMETER, f"leverage must be an integer >= 1, got {raw!r}")
        leverage = int(value)
        maximum = int(contract_row["maxLongLeverage"])
        if leverage > maximum:
            raise SimReject(INVALID_PARAMETER, f"leverage {leverage} exceeds the maximum {maximum}")
        side = side.upper()
        if side not in ("LONG", "SHORT", "BOTH"):
            raise SimReject(INVALID_PARAMETER, f"side must be LONG, SHORT or BOTH, got {side!r}")
        with self.lock:
            pair = account.leverage[str(symbol)]
            if side in ("LONG", "BOTH"):
                pair[0] = leverage
            if side in ("SHORT", "BOTH"):
                pair[1] = leverage
            self._emit(account, self._config_event(account, str(symbol)))
        return leverage

    def set_margin_type(self, account: SimAccount, symbol: str | None, margin_type: str) -> None:
        """Switch isolated/cross (refused with open positions or orders on the symbol)."""
        self.check_symbol(symbol)
        margin_type = margin_type.upper()
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise SimReject(INVALID_PARAMETER, "marginType must be ISOLATED or CROSSED")
        with self.lock:
            if account.margin_type[str(symbol)] != margin_type and self._busy(account, symbol):
                raise SimReject(
                    INVALID_PARAMETER, "margin type cannot be changed with open positions or orders"
                )
            account.margin_type[str(symbol)] = margin_type
            self._emit(account, self._config_event(account, str(symbol)))

    def fee_rate(self, symbol: str, *, maker: bool) -> Decimal:
        """The symbol's published maker or taker fee rate."""
        return Decimal(self.contract_row(symbol)["makerFeeRate" if maker else "takerFeeRate"])

    def contract_row(self, symbol: str | None) -> dict:
        """The ``/quote/contracts`` row of a listed symbol."""
        self.check_symbol(symbol)
        return next(row for row in self.market.contracts() if row["symbol"] == symbol)

    # -- BingX-shaped records ---------------------------------------------------------------

    def order_record(self, order: SimOrder, account: SimAccount) -> dict:
        """The full order record of query/cancel/history answers."""
        contract = self.market.contract(order.symbol)
        pp, qp = contract.price_precision, contract.quantity_precision
        avg = order.cum_quote / order.executed if order.executed else ZERO
        lev = account.leverage[order.symbol][0 if order.side == "BUY" else 1]
        return {
            "symbol": order.symbol,
            "orderId": int(order.order_id),
            "side": order.side,
            "positionSide": order.position_side,
            "type": order.type,
            "origQty": _fmt(order.quantity, qp),
            "price": _fmt(order.price, pp),
            "executedQty": _fmt(order.executed, qp),
            "avgPrice": _fmt(avg, pp + 2),
            "cumQuote": _money(order.cum_quote),
            "stopPrice": "",
            "profit": _money(order.realised),
            "commission": _money(order.commission),
            "status": order.status,
            "time": order.time_ms,
            "updateTime": order.update_ms,
            "clientOrderId": order.client_order_id,
            "leverage": f"{lev}X",
            "workingType": "MARK_PRICE",
            "onlyOnePosition": False,
            "reduceOnly": order.reduce_only,
            "timeInForce": order.time_in_force,
            "stopLoss": order.stop_loss or "",
            "takeProfit": order.take_profit or "",
        }

    def fill_record(self, fill: SimFill) -> dict:
        """One ``allFillOrders`` row (BingX reports the time in UTC+8, ISO-8601)."""
        contract = self.market.contract(fill.symbol)
        when = datetime.fromtimestamp(fill.time_ms / 1000, tz=UTC).astimezone(_FILL_TZ)
        return {
            "volume": _fmt(fill.quantity, contract.quantity_precision),
            "price": _fmt(fill.price, contract.price_precision),
            "amount": _money(fill.price * fill.quantity),
            "commission": _money(fill.commission),
            "currency": "USDT",
            "orderId": fill.order_id,
            "liquidatedPrice": "0.00",
            "liquidatedMarginRatio": "0.00",
            "filledTime": when.isoformat(timespec="milliseconds"),
        }

    def position_records(self, account: SimAccount, symbol: str | None) -> list[dict]:
        """``/user/positions`` rows (non-zero positions; one-way shorts as SHORT, amount > 0)."""
        now = self.now_ms()
        out = []
        for position in account.positions.values():
            if position.quantity == 0 or (symbol and position.symbol != symbol):
                continue
            contract = self.market.contract(position.symbol)
            mark = self.mark_price(position.symbol, now)
            qty = position.quantity
            lev = account.leverage[position.symbol][0 if qty > 0 else 1]
            side = position.side if position.side != "BOTH" else ("LONG" if qty > 0 else "SHORT")
            margin = abs(qty) * mark / lev
            out.append(
                {
                    "symbol": position.symbol,
                    "positionId": _position_id(account.user_id, position.symbol, side),
                    "positionSide": side,
                    "isolated": account.margin_type[position.symbol] == "ISOLATED",
                    "positionAmt": _fmt(abs(qty), contract.quantity_precision),
                    "availableAmt": _fmt(abs(qty), contract.quantity_precision),
                    "unrealizedProfit": _money((mark - position.entry_price) * qty),
                    "realisedProfit": _money(position.realised),
                    "initialMargin": _money(margin),
                    "margin": _money(margin),
                    "avgPrice": _fmt(position.entry_price, contract.price_precision + 2),
                    "liquidationPrice": 0,
                    "leverage": lev,
                    "positionValue": _money(abs(qty) * mark),
                    "markPrice": _fmt(mark, contract.price_precision),
                    "riskRate": "0.0000",
                    "maxMarginReduction": "0.0",
                    "pnlRatio": "0.0000",
                    "updateTime": position.update_ms,
                }
            )
        return out

    def balance_record(self, account: SimAccount) -> dict:
        """The USDT row of ``/v3/user/balance``."""
        position_margin, order_margin, unrealised = self._used_margin(account, self.now_ms())
        available = account.balance + min(unrealised, ZERO) - position_margin - order_margin
        realised = sum((p.realised for p in account.positions.values()), ZERO)
        return {
            "userId": account.user_id,
            "asset": "USDT",
            "balance": _money(account.balance),
            "equity": _money(account.balance + unrealised),
            "unrealizedProfit": _money(unrealised),
            "realisedProfit": _money(realised),
            "availableMargin": _money(max(available, ZERO)),
            "usedMargin": _money(position_margin),
            "freezedMargin": _money(order_margin),
            "shortUid": account.user_id,
        }

    def _order_event(self, order: SimOrder, execution: str) -> dict:
        contract = self.market.contract(order.symbol)
        pp, qp = contract.price_precision, contract.quantity_precision
        avg = order.cum_quote / order.executed if order.executed else ZERO
        status = "CANCELED" if order.status == "CANCELLED" else order.status
        return {
            "e": "ORDER_TRADE_UPDATE",
            "E": self.now_ms(),
            "o": {
                "s": order.symbol,
                "c": order.client_order_id,
                "i": order.order_id,
                "S": order.side,
                "o": order.type,
                "q": _fmt(order.quantity, qp),
                "p": _fmt(order.price, pp),
                "ap": _fmt(avg, pp + 2),
                "x": "CANCELED" if execution == "CANCELLED" else execution,
                "X": status,
                "N": "USDT",
                "n": _money(order.commission),
                "T": order.update_ms,
                "wt": "MARK_PRICE",
                "ps": order.position_side,
                "rp": _money(order.realised),
                "z": _fmt(order.executed, qp),
                "R": order.reduce_only,
            },
        }

    def _account_event(self, account: SimAccount, reason: str, change: Decimal) -> dict:
        positions = []
        now = self.now_ms()
        for position in account.positions.values():
            contract = self.market.contract(position.symbol)
            mark = self.mark_price(position.symbol, now)
            qty = position.quantity
            side = position.side if position.side != "BOTH" else ("LONG" if qty >= 0 else "SHORT")
            positions.append(
                {
                    "s": position.symbol,
                    "pa": _fmt(abs(qty), contract.quantity_precision),
                    "ep": _fmt(position.entry_price, contract.price_precision + 2),
                    "up": _money((mark - position.entry_price) * qty),
                    "mt": account.margin_type[position.symbol].lower().replace("crossed", "cross"),
                    "iw": "0",
                    "ps": side,
                }
            )
        return {
            "e": "ACCOUNT_UPDATE",
            "E": now,
            "a": {
                "m": reason,
                "B": [
                    {
                        "a": "USDT",
                        "wb": _money(account.balance),
                        "cw": _money(account.balance),
                        "bc": _money(change),
                    }
                ],
                "P": positions,
            },
        }

    def _config_event(self, account: SimAccount, symbol: str) -> dict:
        long, short = account.leverage[symbol]
        return {
            "e": "ACCOUNT_CONFIG_UPDATE",
            "E": self.now_ms(),
            "ac": {
                "s": symbol,
                "l": long,
                "S": short,
                "mt": account.margin_type[symbol].lower().replace("crossed", "cross"),
            },
        }


def _position_id(user_id: str, symbol: str, side: str) -> str:
    digest = hashlib.blake2b(f"{user_id}|{symbol}|{side}".encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big") % 10**18 + 10**18)
