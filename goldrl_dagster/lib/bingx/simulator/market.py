"""A seeded, reproducible, gold-like 1-minute market for XAUT-USDT and PAXG-USDT.

The price process is built to look like gold on a crypto exchange, not like a textbook random
walk:

* stochastic volatility: the log-volatility is an AR(1) process (half-life of about six hours),
  so calm and turbulent stretches cluster;
* Student-t shocks (5 degrees of freedom) give fat tails, and rare jumps (about one every two
  days) also kick the volatility up;
* an intraday session profile (London and New York opens) and quiet weekends;
* volume grows with the absolute return;
* PAXG is XAUT's twin: the same gold path plus a small mean-reverting basis and its own noise.

Reproducibility: every day's random numbers come from their own generator,
``SeedSequence([seed, symbol_index, day])``, and each day continues the previous day's state
(volatility, price, basis). Days are computed in fixed 16-day chunks (vectorised), so a candle
depends only on (seed, symbol, open time), never on which range was asked for first or how it was
paged. Prices are held as integer ticks, volumes as integer lots, so values survive the round
trip through BingX's decimal strings exactly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from scipy.signal import lfilter

from goldrl_dagster.lib.bingx.models import BINGX_INTERVALS, Kline
from goldrl_dagster.lib.bingx.simulator.intervals import (
    bucket_opens,
    ceil_open,
    floor_open,
    shift_open,
)
from goldrl_dagster.lib.bingx.symbols import GOLD_SYMBOLS

GENESIS_MS = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
MINUTE_MS = 60_000
DAY_MS = 86_400_000
DAY_MINUTES = 1440
# Days computed together. Every day still has its own seed; the chunk is only the unit of
# (vectorised) computation and of caching, and its boundaries are fixed, so results never depend
# on which range was requested first.
CHUNK_DAYS = 16
CHUNK_MINUTES = CHUNK_DAYS * DAY_MINUTES

# The simulator serves every BingX interval (see :mod:`.intervals` for the bar alignment).
SIM_INTERVALS: tuple[str, ...] = BINGX_INTERVALS

# How far back BingX's kline endpoint serves each interval, as a span before "now" (ms); an
# interval not listed goes back to listing. BingX documents no depth: this profile is the
# assumption goldrl plans for (minute bars for about a month, hourly bars for about a year,
# daily and longer bars back to listing) so that backfill and the exchange-bar fallback are
# exercised; a deployment that learns the real depth overrides it with
# :meth:`SimulatedMarket.set_history_depth`.
BINGX_HISTORY_DEPTH: dict[str, int] = {
    **{i: 30 * DAY_MS for i in ("1m", "3m", "5m")},
    **{i: 90 * DAY_MS for i in ("15m", "30m")},
    **{i: 365 * DAY_MS for i in ("1h", "2h", "4h", "6h", "8h", "12h")},
}
# Rule fields of a ``/quote/contracts`` row that :meth:`SimulatedMarket.set_contract_rules` may
# change (identity fields and the listing time are not rules).
RULE_FIELDS = (
    "size", "quantityPrecision", "pricePrecision", "feeRate", "makerFeeRate", "takerFeeRate",
    "tradeMinLimit", "tradeMinQuantity", "tradeMinUSDT", "maxLongLeverage", "maxShortLeverage",
    "status", "apiStateOpen", "apiStateClose",
)  # fmt: skip

# -- process parameters (per minute) -------------------------------------------------------
_PHI = 0.998  # log-vol AR(1) coefficient: half-life ln(0.5)/ln(0.998) ≈ 346 minutes
_VOL_OF_VOL = 0.025  # innovation scale of the log-vol; stationary sd ≈ 0.4
_SIGMA0 = 1.7e-4  # base 1m volatility before the session profile
_DF = 5.0  # Student-t degrees of freedom (finite kurtosis, still fat-tailed)
_T_SCALE = float(np.sqrt((_DF - 2.0) / _DF))  # scales the t draw to unit variance
_DRIFT = 0.06 / 525_600  # about 6 % a year
_JUMP_PROB = 1.0 / 2880.0
_JUMP_SIZE = 0.0015
_JUMP_VOL_KICK = 0.5  # a jump raises the log-vol by this much (then it decays)
_WICK = 0.8  # wick length in units of the minute's volatility
_VOLUME_NOISE = 0.45  # log-normal noise of volume
_WEEKEND_FACTOR = 0.35
# PAXG basis: log(PAXG) - log(XAUT) = mean + AR(1) deviation + microstructure noise.
_BASIS_MEAN = 0.0012
_BASIS_PHI = 0.999
_BASIS_STEP = 1.5e-5
_BASIS_NOISE = 0.2  # idiosyncratic noise in units of the minute's volatility


@dataclass(frozen=True)
class SimContract:
    """Static description of one simulated contract."""

    symbol: str
    index: int
    contract_id: str
    price_precision: int
    quantity_precision: int
    min_quantity: str
    min_notional: str
    base_volume: float  # typical volume per minute, base units

    @property
    def asset(self) -> str:
        """Base asset, e.g. ``XAUT``."""
        return self.symbol.split("-")[0]


CONTRACTS: dict[str, SimContract] = {
    "XAUT-USDT": SimContract("XAUT-USDT", 0, "900001", 2, 4, "0.0005", "2", 14.0),
    "PAXG-USDT": SimContract("PAXG-USDT", 1, "900002", 2, 3, "0.001", "2", 4.0),
}
assert tuple(CONTRACTS) == GOLD_SYMBOLS


@dataclass(frozen=True)
class _State:
    """Process state at the start of a chunk."""

    log_vol: float  # XAUT: log-vol deviation; PAXG: basis deviation
    log_price: float  # unrounded log price at the previous minute's close
    last_close: int  # previous minute's close in ticks (the next open)


@dataclass(frozen=True)
class _Block:
    """One chunk of 1m candles (ticks / lots) plus what intraday paths and the twin need."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    t_high: np.ndarray  # fraction of the minute at which the high was reached
    t_low: np.ndarray
    log_price: np.ndarray  # unrounded log close
    sigma: np.ndarray  # the minute's volatility


def _bump(minutes: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (minutes - centre + 720.0) % 1440.0 - 720.0  # circular distance in minutes
    return np.exp(-0.5 * (d / width) ** 2)


class SimulatedMarket:
    """Deterministic simulated BingX market data.

    Args:
        seed: Seed of the whole market; the same seed always gives the same candles.
        genesis_ms: Listing time of the contracts (first candle's open time), minute aligned.
        cache_days: How many generated days to keep in memory per symbol (about 1 MB per
            16 days); the default holds over two years, so a long-running simulator never
            regenerates.
    """

    def __init__(
        self, seed: int = 7, genesis_ms: int = GENESIS_MS, *, cache_days: int = 800
    ) -> None:
        if genesis_ms % MINUTE_MS:
            raise ValueError(f"genesis_ms must be minute aligned, got {genesis_ms}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.genesis_ms = genesis_ms
        self._cache_chunks = max(4, cache_days // CHUNK_DAYS)
        self._lock = threading.RLock()
        # One LRU cache per symbol, so PAXG's chunks never evict the XAUT chunks they derive from.
        self._blocks: list[OrderedDict[int, _Block]] = [OrderedDict() for _ in CONTRACTS]
        self._profiles: dict[int, np.ndarray] = {}
        self._states: list[list[_State]] = self._initial_states()
        self._listings: dict[str, int] = dict.fromkeys(CONTRACTS, genesis_ms)
        self._rules: dict[str, dict[str, str]] = {symbol: {} for symbol in CONTRACTS}
        self._depth: dict[str, int] = {}

    # -- listing, rules and history depth (what the exchange publishes about itself) --------

    def listing_ms(self, symbol: str) -> int:
        """Listing time of ``symbol`` (epoch ms): its ``launchTime`` and first served bar."""
        self.contract(symbol)
        return self._listings[symbol]

    def set_listing(self, symbol: str, launch_ms: int) -> None:
        """List ``symbol`` later than genesis: no bar of it opens before ``launch_ms``.

        The price path is unchanged (it still starts at genesis); the exchange just does not
        show it before the listing, as a contract listed on a later day.

        Raises:
            ValueError: If ``launch_ms`` precedes genesis or is not minute aligned.
        """
        self.contract(symbol)
        if launch_ms < self.genesis_ms or launch_ms % MINUTE_MS:
            raise ValueError(
                f"launch time of {symbol} must be a minute at or after genesis "
                f"({self.genesis_ms}), got {launch_ms}"
            )
        with self._lock:
            self._listings[symbol] = launch_ms

    def set_contract_rules(self, symbol: str, **fields: str) -> None:
        """Change trading rules of ``symbol`` as the exchange would (e.g. ``takerFeeRate``).

        Values are BingX's strings; later ``/quote/contracts`` answers carry them.

        Raises:
            ValueError: If a field is not a rule of a contracts row.
        """
        self.contract(symbol)
        unknown = sorted(set(fields) - set(RULE_FIELDS))
        if unknown:
            raise ValueError(f"{unknown} are not contract rule fields; use some of {RULE_FIELDS}")
        with self._lock:
            self._rules[symbol].update({k: str(v) for k, v in fields.items()})

    def set_history_depth(self, depth: dict[str, int] | None) -> None:
        """Limit how far back klines are served, per interval (ms before now; None: no limit).

        Use :data:`BINGX_HISTORY_DEPTH` for the profile goldrl assumes for BingX.

        Raises:
            ValueError: If an interval is unknown or a span is not positive.
        """
        depth = dict(depth or {})
        for interval, span in depth.items():
            if interval not in SIM_INTERVALS or span <= 0:
                raise ValueError(
                    f"history depth needs a BingX interval and a span > 0, got {interval}={span}"
                )
        with self._lock:
            self._depth = depth

    def oldest_served_ms(self, symbol: str, interval: str, now_ms: int) -> int:
        """Earliest open time the kline endpoint shows for ``symbol``/``interval`` at ``now_ms``.

        The later of the listing and the interval's history depth (bars opening before it are
        never served, as on BingX where minute history does not reach back to listing).
        """
        oldest = self.listing_ms(symbol)
        span = self._depth.get(interval)
        return oldest if span is None else max(oldest, now_ms - span)

    # -- public API ------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols this market lists."""
        return tuple(CONTRACTS)

    def contract(self, symbol: str) -> SimContract:
        """Return the static description of ``symbol``.

        Raises:
            KeyError: If the market does not list the symbol.
        """
        try:
            return CONTRACTS[symbol]
        except KeyError:
            raise KeyError(f"simulated market lists {list(CONTRACTS)}, not {symbol!r}") from None

    def contracts(self) -> list[dict]:
        """Return the contracts as BingX's ``/quote/contracts`` rows (numbers as strings)."""
        return [
            {
                "contractId": c.contract_id,
                "symbol": c.symbol,
                "size": "1",
                "quantityPrecision": str(c.quantity_precision),
                "pricePrecision": str(c.price_precision),
                "feeRate": "0.0005",
                "makerFeeRate": "0.0002",
                "takerFeeRate": "0.0005",
                "tradeMinLimit": "0",
                "tradeMinQuantity": c.min_quantity,
                "tradeMinUSDT": c.min_notional,
                "maxLongLeverage": "50",
                "maxShortLeverage": "50",
                "currency": "USDT",
                "asset": c.asset,
                "displayName": f"{c.symbol} (SIMULATED)",
                "status": "1",
                "apiStateOpen": "true",
                "apiStateClose": "true",
                "launchTime": str(self._listings[c.symbol]),
                **self._rules[c.symbol],
            }
            for c in CONTRACTS.values()
        ]

    def candle_arrays(self, symbol: str, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        """Final 1m candles with ``start_ms <= open_time < end_ms`` as numpy arrays.

        Returns:
            ``open_time`` (int64 ms) and float64 ``open, high, low, close, volume``.
        """
        ticks = self._minute_ticks(self.contract(symbol).index, start_ms, end_ms)
        return self._to_float(symbol, ticks)

    def candles(self, symbol: str, start_ms: int, end_ms: int) -> list[Kline]:
        """Final 1m candles with ``start_ms <= open_time < end_ms`` (none before genesis)."""
        return _klines(self.candle_arrays(symbol, start_ms, end_ms))

    def bars(
        self, symbol: str, interval: str, start_ms: int, end_ms: int, now_ms: int
    ) -> list[Kline]:
        """Candles as the exchange shows them at ``now_ms``.

        Bars of ``interval`` (aggregated from 1m) with ``start_ms <= open_time < end_ms``,
        excluding bars that open after ``now_ms``; the bar containing ``now_ms`` is still open
        and carries partial values that converge to the final ones at its close. Bars opening
        before :meth:`oldest_served_ms` (listing, history depth) are not shown.

        Raises:
            ValueError: If the interval is not one the simulator serves.
        """
        index = self.contract(symbol).index
        if interval not in SIM_INTERVALS:
            raise ValueError(
                f"the simulator serves intervals {list(SIM_INTERVALS)}, not {interval!r}"
            )
        # Bars that open before listing (or beyond the history depth) are left out rather
        # than shown partial.
        first = ceil_open(max(start_ms, self.oldest_served_ms(symbol, interval, now_ms)), interval)
        current_minute = now_ms // MINUTE_MS * MINUTE_MS
        stop = min(end_ms, floor_open(now_ms, interval) + 1)  # open times must be < stop
        if first >= stop:
            return _klines(self._to_float(symbol, _empty_ticks()))
        bar_end = shift_open(floor_open(stop - 1, interval), 1, interval)
        minutes = self._minute_ticks(index, first, min(bar_end, current_minute))
        if first <= current_minute < bar_end and current_minute >= self.genesis_ms:
            partial = self._partial_ticks(index, current_minute, now_ms)
            minutes = {k: np.append(v, partial[k]) for k, v in minutes.items()}
        return _klines(self._to_float(symbol, _aggregate(minutes, interval)))

    def candle_at(self, symbol: str, open_time_ms: int, now_ms: int | None = None) -> Kline:
        """One 1m candle, as it stood at ``now_ms`` (final when ``now_ms`` is omitted or later).

        Raises:
            ValueError: If the time is not minute aligned, precedes genesis, or ``now_ms``
                precedes the candle's open.
        """
        if open_time_ms % MINUTE_MS or open_time_ms < self.genesis_ms:
            raise ValueError(f"no simulated candle opens at {open_time_ms}")
        if now_ms is None:
            now_ms = open_time_ms + MINUTE_MS
        if now_ms < open_time_ms:
            raise ValueError(f"candle {open_time_ms} has not opened at {now_ms}")
        ticks = self._partial_ticks(self.contract(symbol).index, open_time_ms, now_ms)
        return _klines(self._to_float(symbol, ticks))[0]

    def prices_at(self, symbol: str, times_ms: np.ndarray) -> np.ndarray:
        """Prices on the intraday path at the given times (as a trade there would print).

        This is the path partial candles follow, so a trade at ``t`` lies within the candle as
        it stood at ``t`` and equals its close then.

        Args:
            symbol: Listed symbol.
            times_ms: Epoch ms, none before listing.

        Returns:
            float64 prices, rounded to the contract's tick.
        """
        contract = self.contract(symbol)
        times_ms = np.asarray(times_ms, dtype=np.int64)
        if times_ms.size and times_ms.min() < self.genesis_ms:
            raise ValueError("no simulated prices before listing")
        out = np.empty(times_ms.size, dtype=np.float64)
        minutes = times_ms // MINUTE_MS * MINUTE_MS
        for minute in np.unique(minutes):
            mask = minutes == minute
            fractions = (times_ms[mask] - minute) / MINUTE_MS
            out[mask] = self._path_ticks(contract.index, int(minute), fractions)
        return out / float(10**contract.price_precision)

    def _path_ticks(self, index: int, open_time_ms: int, fractions: np.ndarray) -> np.ndarray:
        minute = (open_time_ms - self.genesis_ms) // MINUTE_MS
        block = self._block(index, minute // CHUNK_MINUTES)
        i = minute % CHUNK_MINUTES
        o, h, lo, c = (int(getattr(block, f)[i]) for f in _TICK_FIELDS[1:5])
        extremes = sorted([(float(block.t_high[i]), h), (float(block.t_low[i]), lo)])
        knots = [(0.0, o), *extremes, (1.0, c)]
        return np.rint(np.interp(fractions, [t for t, _ in knots], [p for _, p in knots]))

    # -- generation ------------------------------------------------------------------------

    def _initial_states(self) -> list[list[_State]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, 2**32 - 1]))
        price = rng.uniform(2600.0, 3000.0)
        log_vol = rng.normal(0.0, _VOL_OF_VOL / np.sqrt(1.0 - _PHI**2))
        basis = rng.normal(0.0, _BASIS_STEP / np.sqrt(1.0 - _BASIS_PHI**2))
        states = []
        for contract, log_price, vol in (
            (CONTRACTS["XAUT-USDT"], np.log(price), log_vol),
            (CONTRACTS["PAXG-USDT"], np.log(price) + _BASIS_MEAN + basis, basis),
        ):
            scale = 10**contract.price_precision
            states.append(
                [_State(float(vol), float(log_price), round(float(np.exp(log_price)) * scale))]
            )
        return states

    def _day_draws(self, index: int, first_day: int, names: tuple[str, ...]) -> dict:
        """Random draws of a chunk, one generator per day: ``SeedSequence([seed, index, day])``.

        Each draw is a ``(CHUNK_DAYS, DAY_MINUTES)`` matrix; the draw order within a day is
        fixed, so a day's numbers never depend on anything but (seed, symbol, day).
        """
        out = {name: np.empty((CHUNK_DAYS, DAY_MINUTES)) for name in names}
        for row in range(CHUNK_DAYS):
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, index, first_day + row]))
            for name in names:
                out[name][row] = _DRAWS[name](rng)
        return {name: matrix.ravel() for name, matrix in out.items()}

    def _candles_from_path(
        self,
        contract: SimContract,
        draws: dict[str, np.ndarray],
        log_price: np.ndarray,
        sigma: np.ndarray,
        state: _State,
    ) -> _Block:
        scale = 10**contract.price_precision
        close = np.rint(np.exp(log_price) * scale).astype(np.int64)
        open_ = np.concatenate(([state.last_close], close[:-1]))
        body_high = np.maximum(open_, close)
        body_low = np.minimum(open_, close)
        wick_up = np.abs(draws["wick_up"]) * sigma * _WICK
        wick_down = np.abs(draws["wick_down"]) * sigma * _WICK
        high = np.maximum(body_high, np.rint(body_high * (1.0 + wick_up)).astype(np.int64))
        low = np.minimum(body_low, np.rint(body_low * (1.0 - wick_down)).astype(np.int64))
        low = np.maximum(low, 1)
        returns = np.diff(log_price, prepend=state.log_price)
        volume = (
            contract.base_volume
            * (sigma / _SIGMA0)
            * (0.4 + 0.6 * np.abs(returns) / sigma)
            * np.exp(_VOLUME_NOISE * draws["volume"])
        )
        lots = 10**contract.quantity_precision
        return _Block(
            open=open_.astype(np.int32),
            high=high.astype(np.int32),
            low=low.astype(np.int32),
            close=close.astype(np.int32),
            volume=np.maximum(np.rint(volume * lots), 1).astype(np.int32),
            t_high=draws["t_high"].astype(np.float32),
            t_low=draws["t_low"].astype(np.float32),
            log_price=log_price,
            sigma=sigma,
        )

    def _generate_gold(self, chunk: int, state: _State) -> tuple[_Block, _State]:
        """One chunk of XAUT: the gold path itself."""
        first_day = chunk * CHUNK_DAYS
        draws = self._day_draws(0, first_day, _GOLD_DRAWS)
        jumped = draws["jump_u"] < _JUMP_PROB
        innovations = _VOL_OF_VOL * draws["eta"] + np.where(jumped, _JUMP_VOL_KICK, 0.0)
        log_vol, _ = lfilter([1.0], [1.0, -_PHI], innovations, zi=[_PHI * state.log_vol])
        sigma = _SIGMA0 * np.exp(log_vol) * self._session_profile(first_day)
        returns = _DRIFT + sigma * draws["shock"] * _T_SCALE
        returns += np.where(jumped, _JUMP_SIZE * draws["jump"], 0.0)
        log_price = state.log_price + np.cumsum(returns)
        block = self._candles_from_path(CONTRACTS["XAUT-USDT"], draws, log_price, sigma, state)
        return block, _State(float(log_vol[-1]), float(log_price[-1]), int(block.close[-1]))

    def _generate_twin(self, chunk: int, state: _State) -> tuple[_Block, _State]:
        """One chunk of PAXG: XAUT's path plus a mean-reverting basis and its own noise."""
        gold = self._block(0, chunk)
        draws = self._day_draws(1, chunk * CHUNK_DAYS, _TWIN_DRAWS)
        steps = _BASIS_STEP * draws["basis"]
        basis, _ = lfilter([1.0], [1.0, -_BASIS_PHI], steps, zi=[_BASIS_PHI * state.log_vol])
        noise = _BASIS_NOISE * gold.sigma * draws["noise"]
        log_price = gold.log_price + _BASIS_MEAN + basis + noise
        block = self._candles_from_path(CONTRACTS["PAXG-USDT"], draws, log_price, gold.sigma, state)
        # Nothing derives from PAXG's path: do not keep it in memory.
        block = replace(block, log_price=_NOTHING, sigma=_NOTHING)
        return block, _State(float(basis[-1]), float(log_price[-1]), int(block.close[-1]))

    def _session_profile(self, first_day: int) -> np.ndarray:
        """Volatility multiplier of every minute of the chunk starting at ``first_day``."""
        # The profile repeats weekly, so there are at most seven distinct chunk profiles.
        key = first_day % 7
        if key not in self._profiles:
            self._profiles[key] = self._compute_session_profile(first_day)
        return self._profiles[key]

    def _compute_session_profile(self, first_day: int) -> np.ndarray:
        start = self.genesis_ms + first_day * DAY_MS
        times = start + np.arange(CHUNK_DAYS * DAY_MINUTES, dtype=np.int64) * MINUTE_MS
        minutes = (times // MINUTE_MS % DAY_MINUTES).astype(float)
        profile = (
            0.6
            + 0.6 * _bump(minutes, 7 * 60, 60)  # London open
            + 1.0 * _bump(minutes, 13 * 60 + 30, 70)  # New York open, US data
            + 0.4 * _bump(minutes, 15 * 60, 120)  # London fix / US session
        )
        # Spot gold pauses at weekends; the perpetuals keep trading, thinly.
        # 1970-01-01 was a Thursday (weekday 3); weekdays 5 and 6 are Saturday and Sunday.
        weekdays = (times // DAY_MS + 3) % 7
        return np.where(weekdays >= 5, profile * _WEEKEND_FACTOR, profile)

    def _generate(self, index: int, chunk: int, state: _State) -> tuple[_Block, _State]:
        return (self._generate_gold if index == 0 else self._generate_twin)(chunk, state)

    def _remember(self, index: int, chunk: int, block: _Block) -> None:
        cache = self._blocks[index]
        cache[chunk] = block
        cache.move_to_end(chunk)
        while len(cache) > self._cache_chunks:
            cache.popitem(last=False)

    def _block(self, index: int, chunk: int) -> _Block:
        """Chunk ``chunk`` of symbol ``index``, generating the state chain up to it if needed."""
        with self._lock:
            cache = self._blocks[index]
            cached = cache.get(chunk)
            if cached is not None:
                cache.move_to_end(chunk)
                return cached
            states = self._states[index]
            while len(states) <= chunk:
                known = len(states) - 1
                block, following = self._generate(index, known, states[known])
                self._remember(index, known, block)
                states.append(following)
            if chunk not in cache:
                self._remember(index, chunk, self._generate(index, chunk, states[chunk])[0])
            return cache[chunk]

    def _minute_ticks(self, index: int, start_ms: int, end_ms: int) -> dict[str, np.ndarray]:
        start = max(start_ms, self.genesis_ms)
        start = -(-(start - self.genesis_ms) // MINUTE_MS)  # first minute index (ceil)
        stop = -(-(end_ms - self.genesis_ms) // MINUTE_MS)  # exclusive minute index
        if stop <= start:
            return _empty_ticks()
        pieces: dict[str, list[np.ndarray]] = {k: [] for k in _TICK_FIELDS[1:]}
        for chunk in range(start // CHUNK_MINUTES, (stop - 1) // CHUNK_MINUTES + 1):
            block = self._block(index, chunk)
            lo = max(start - chunk * CHUNK_MINUTES, 0)
            hi = min(stop - chunk * CHUNK_MINUTES, CHUNK_MINUTES)
            for name in _TICK_FIELDS[1:]:
                pieces[name].append(getattr(block, name)[lo:hi])
        out = {k: np.concatenate(v).astype(np.int64) for k, v in pieces.items()}
        out["open_time"] = self.genesis_ms + np.arange(start, stop, dtype=np.int64) * MINUTE_MS
        return out

    def _partial_ticks(self, index: int, open_time_ms: int, now_ms: int) -> dict[str, np.ndarray]:
        """The 1m candle opening at ``open_time_ms`` as it stood at ``now_ms``.

        The price moves piecewise linearly from the open through the high and the low (in the
        order they occurred) to the close, so partial values converge to the final candle.
        """
        minute = (open_time_ms - self.genesis_ms) // MINUTE_MS
        block = self._block(index, minute // CHUNK_MINUTES)
        i = minute % CHUNK_MINUTES
        o, h, lo, c, v = (int(getattr(block, f)[i]) for f in _TICK_FIELDS[1:])
        fraction = min(max((now_ms - open_time_ms) / MINUTE_MS, 0.0), 1.0)
        if fraction < 1.0:
            extremes = sorted([(float(block.t_high[i]), h), (float(block.t_low[i]), lo)])
            knots = [(0.0, o), *extremes, (1.0, c)]
            times = [t for t, _ in knots]
            price = round(float(np.interp(fraction, times, [p for _, p in knots])))
            passed = [p for t, p in knots if t <= fraction] + [price]
            h, lo, c = max(passed), min(passed), price
            v = int(v * fraction)
        return {
            "open_time": np.array([open_time_ms], dtype=np.int64),
            **{
                name: np.array([value], dtype=np.int64)
                for name, value in zip(_TICK_FIELDS[1:], (o, h, lo, c, v), strict=True)
            },
        }

    def _to_float(self, symbol: str, ticks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        contract = self.contract(symbol)
        # Division by the power of ten (not multiplication by 0.01…) gives the double nearest to
        # the decimal, i.e. exactly what float() of BingX's string makes of it.
        price_scale = float(10**contract.price_precision)
        lot_scale = float(10**contract.quantity_precision)
        out = {"open_time": ticks["open_time"]}
        for name in ("open", "high", "low", "close"):
            out[name] = ticks[name] / price_scale
        out["volume"] = ticks["volume"] / lot_scale
        return out


_DRAWS = {
    "eta": lambda rng: rng.standard_normal(DAY_MINUTES),
    "jump_u": lambda rng: rng.random(DAY_MINUTES),
    "jump": lambda rng: rng.standard_normal(DAY_MINUTES),
    "shock": lambda rng: rng.standard_t(_DF, DAY_MINUTES),
    "basis": lambda rng: rng.standard_normal(DAY_MINUTES),
    "noise": lambda rng: rng.standard_normal(DAY_MINUTES),
    "wick_up": lambda rng: rng.standard_normal(DAY_MINUTES),
    "wick_down": lambda rng: rng.standard_normal(DAY_MINUTES),
    "volume": lambda rng: rng.standard_normal(DAY_MINUTES),
    "t_high": lambda rng: rng.uniform(0.05, 0.95, DAY_MINUTES),
    "t_low": lambda rng: rng.uniform(0.05, 0.95, DAY_MINUTES),
}
_CANDLE_DRAWS = ("wick_up", "wick_down", "volume", "t_high", "t_low")
_GOLD_DRAWS = ("eta", "jump_u", "jump", "shock", *_CANDLE_DRAWS)
_TWIN_DRAWS = ("basis", "noise", *_CANDLE_DRAWS)


_NOTHING = np.empty(0)
_TICK_FIELDS = ("open_time", "open", "high", "low", "close", "volume")


def _empty_ticks() -> dict[str, np.ndarray]:
    return {k: np.empty(0, dtype=np.int64) for k in _TICK_FIELDS}


def _aggregate(minutes: dict[str, np.ndarray], interval: str) -> dict[str, np.ndarray]:
    """Aggregate 1m ticks into bars of ``interval`` (aligned as in :mod:`.intervals`)."""
    if interval == "1m" or minutes["open_time"].size == 0:
        return minutes
    bucket = bucket_opens(minutes["open_time"], interval)
    starts = np.flatnonzero(np.diff(bucket, prepend=bucket[0] - 1))
    ends = np.append(starts[1:], bucket.size) - 1
    return {
        "open_time": bucket[starts],
        "open": minutes["open"][starts],
        "high": np.maximum.reduceat(minutes["high"], starts),
        "low": np.minimum.reduceat(minutes["low"], starts),
        "close": minutes["close"][ends],
        "volume": np.add.reduceat(minutes["volume"], starts),
    }


def _klines(arrays: dict[str, np.ndarray]) -> list[Kline]:
    columns = [arrays[k].tolist() for k in _TICK_FIELDS]
    return [Kline(*row) for row in zip(*columns, strict=True)]
