"""Frozen settings of a live-engine run, from the environment plus explicit overrides."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from goldrl_dagster.lib.bingx.symbols import resolve_symbol
from goldrl_dagster.lib.config import load_settings

PAPER_ACCOUNT = "paper:default"
MODES = ("paper", "live")
OOD_GUARDS = ("on", "required", "off")
"""``ood_guard`` values: hold out-of-distribution bars when the trading model has a training
reference (``on``), refuse a model without one (``required``), or no guard (``off``)."""


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")


@dataclass(frozen=True)
class LiveSettings:
    """What the live engine trades, where, and how often it checks itself.

    Attributes:
        instrument: Exchange symbol.
        interval: Bar interval of the decisions.
        rest_url: BingX REST base URL (history from the feature anchor, gap fill, orders).
        ws_url: BingX market WebSocket URL (also the account stream's, with a listen key).
        mode: ``paper`` (the ledger-backed paper broker) or ``live`` (signed orders on BingX).
        model_id: Model to run instead of the champion (paper mode only), or None.
        duration_seconds: Stop after this long, or None to run until signalled.
        order_quantity: Size of a full position in base units.
        starting_cash: Opening deposit of a new paper account (quote currency); an existing
            paper account keeps its ledger.
        paper_account: Ledger id of the paper account.
        leverage: Leverage the paper account trades under (live reads the exchange's).
        heartbeat_seconds: Interval of the heartbeat (session row, lease, log line).
        max_bar_age_seconds: A bar that closed longer ago than this (exchange time) is never
            decided on: its features are updated and it is recorded as skipped.
        in_flight_check_seconds: How often orders still in flight are reconciled.
        account_check_seconds: How often the whole account is reconciled when nothing is in
            flight (a new order needs a passing report younger than twice this).
        champion_poll_seconds: How often a session following its market re-reads the
            market's assignment (champion, rollout stage, canary size, shadow models), in case
            a ``goldrl_champion`` or ``goldrl_rollout`` notification was missed (sessions
            pinned with ``model_id`` never swap and run no shadow models).
        control_poll_seconds: How often the session re-reads its market's open operator
            commands in case a ``goldrl_control`` notification was missed.
        rules_poll_seconds: How often the session re-reads its instrument's newest contract
            rules in case a ``goldrl_instrument_rules`` notification was missed (a change is
            applied between two bars; see ``live_engine.rules_watch``).
        ood_guard: The out-of-distribution guard of the trading model (``OOD_GUARDS``). ``on``:
            a bar whose features fall outside the model's training reference (the feature
            statistics of its training days) or are not finite is held — recorded, no order,
            the position kept; a model without a reference trades unguarded, with a warning
            (log and session summary). ``required``: a model without a reference is refused
            (at start-up the session does not start; as a new trading model the swap is
            refused and recorded). ``off``: no guard. Paper and live alike default to ``on``.
        drift_window_bars: Bars of the guard's rolling PSI window (its alerts are logged, never
            held); 1440 is a day of 1m bars.
        metrics_host: Address the Prometheus endpoint listens on (loopback by default).
        metrics_port: Port of the Prometheus endpoint (``/metrics``); 0: not served (the
            default here; ``goldrl live`` serves on 9464 unless ``--metrics-port 0``).
    """

    instrument: str
    interval: str
    rest_url: str
    ws_url: str
    mode: Literal["paper", "live"] = "paper"
    model_id: str | None = None
    duration_seconds: float | None = None
    order_quantity: float = 0.05
    starting_cash: float = 100_000.0
    paper_account: str = PAPER_ACCOUNT
    leverage: int = 1
    heartbeat_seconds: float = 10.0
    max_bar_age_seconds: float = 90.0
    in_flight_check_seconds: float = 2.0
    account_check_seconds: float = 60.0
    champion_poll_seconds: float = 30.0
    control_poll_seconds: float = 5.0
    rules_poll_seconds: float = 60.0
    ood_guard: Literal["on", "required", "off"] = "on"
    drift_window_bars: int = 1440
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'paper' or 'live', got {self.mode!r}")
        if self.mode == "live" and self.model_id is not None:
            raise ValueError(
                "live mode trades the champion only; --model-id is for paper sessions"
            )
        _positive("order_quantity", self.order_quantity)
        _positive("starting_cash", self.starting_cash)
        _positive("max_bar_age_seconds", self.max_bar_age_seconds)
        _positive("heartbeat_seconds", self.heartbeat_seconds)
        _positive("in_flight_check_seconds", self.in_flight_check_seconds)
        _positive("account_check_seconds", self.account_check_seconds)
        _positive("champion_poll_seconds", self.champion_poll_seconds)
        _positive("control_poll_seconds", self.control_poll_seconds)
        _positive("rules_poll_seconds", self.rules_poll_seconds)
        if self.duration_seconds is not None:
            _positive("duration_seconds", self.duration_seconds)
        if isinstance(self.leverage, bool) or not isinstance(self.leverage, int):
            raise ValueError(f"leverage must be a whole number, got {self.leverage!r}")
        if self.leverage < 1:
            raise ValueError(f"leverage must be at least 1, got {self.leverage}")
        if not self.paper_account.startswith("paper:") or len(self.paper_account) <= 6:
            raise ValueError(
                f"paper_account must look like 'paper:<name>', got {self.paper_account!r}"
            )
        if self.ood_guard not in OOD_GUARDS:
            raise ValueError(
                f"ood_guard must be 'on', 'required' or 'off', got {self.ood_guard!r}"
            )
        window = self.drift_window_bars
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"drift_window_bars must be a positive whole number, got {window!r}")
        if self.interval != "1m":
            raise ValueError(f"the live engine trades 1m bars for now, got {self.interval!r}")
        port = self.metrics_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"metrics_port must be a port number (0: none), got {port!r}")

    @classmethod
    def from_environment(
        cls,
        *,
        instrument: str = "XAUT-USDT",
        mode: Literal["paper", "live"] = "paper",
        model_id: str | None = None,
        duration_seconds: float | None = None,
        order_quantity: float = 0.05,
        paper_account: str = PAPER_ACCOUNT,
        ood_guard: Literal["on", "required", "off"] = "on",
    ) -> LiveSettings:
        """Build settings from ``GOLDRL_BINGX_*`` variables plus the given overrides."""
        env = load_settings()
        return cls(
            instrument=resolve_symbol(instrument),
            interval="1m",
            rest_url=env.bingx_base_url,
            ws_url=env.bingx_ws_url,
            mode=mode,
            model_id=model_id,
            duration_seconds=duration_seconds,
            order_quantity=order_quantity,
            paper_account=paper_account,
            ood_guard=ood_guard,
        )
