"""The trading side of a live session: account, risk limits, broker and trader, paper or live.

:func:`open_trading` builds one :class:`TradingSession` for the session's instrument. Paper and
live differ only in the broker and where the account comes from:

* **paper** — the ledger-backed :class:`~goldrl_dagster.lib.execution.broker.PaperBroker` on a
  persistent paper account (``paper:default`` unless named), opened once with a deposit of
  ``starting_cash``; without a stored risk configuration the conservative defaults are stored
  (and say so) so a first paper session can trade;
* **live** — :class:`~goldrl_dagster.lib.execution.broker.BingXBroker` over the signed client
  with keys from the environment; the account must be in one-way mode, a risk configuration must
  be stored, and once the start-up reconciliation has booked every fill the ledger's cash is
  synced to the exchange's wallet balance (the difference is booked once per session as a
  ``deposit`` with its reason).

Both then go through the same :class:`~goldrl_dagster.lib.execution.trader.Trader`: lease,
start-up reconciliation, risk gate, executor, ledger.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.trading import BingXTradingClient
from goldrl_dagster.lib.execution.broker import BingXBroker, Broker, PaperBroker
from goldrl_dagster.lib.execution.funding import FundingReport, settle_funding
from goldrl_dagster.lib.execution.reconcile import ReconciliationReport
from goldrl_dagster.lib.execution.trader import Trader
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import DEFAULT_LIMITS, RiskLimits
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.storage.ledger_store import (
    book_deposit,
    book_funding_income,
    first_fill_time,
    ledger_cash,
    ledger_position,
)
from goldrl_dagster.lib.storage.order_store import ensure_account
from goldrl_dagster.lib.storage.risk_store import (
    RiskConfigError,
    load_risk_config,
    restore_machine,
    save_risk_config,
)
from live_engine.settings import LiveSettings

log = logging.getLogger("goldrl.live")


class TradingSetupError(RuntimeError):
    """The account cannot be traded as configured (the message says what to fix)."""


@dataclass
class TradingSession:
    """Everything that places and checks orders for one session.

    Attributes:
        trader: Risk-gated orders on the ledger.
        paper: The paper broker (paper mode), marked with each decision's bar.
        client: The signed client (live mode), closed with the session.
        funding_since: Funding is brought into the ledger from here on (paper: the account's
            first fill; live: the session's start, which the wallet sync covered).
        funding: Funding settlements booked by this session.
    """

    trader: Trader
    paper: PaperBroker | None = None
    client: BingXTradingClient | None = None
    funding_since: datetime | None = None
    funding: FundingReport = field(default_factory=FundingReport)

    @property
    def broker(self) -> Broker:
        """The venue orders go to."""
        return self.trader.broker

    @property
    def account_id(self) -> str:
        """The ledger's account id."""
        return self.trader.broker.account_id

    def use(self, conn: psycopg.Connection) -> Trader:
        """Point the trader at the session's current connection and return it.

        The session's connection is replaced after a database restart.
        """
        self.trader.conn = conn
        return self.trader

    def settle_funding(self, conn: psycopg.Connection, until: datetime) -> FundingReport:
        """Bring the account's funding into the ledger up to ``until`` (idempotent).

        Paper: the stored settlements on the position held at each (from the first fill on).
        Live: what the exchange charged or paid since the session started (the start-up sync
        covered everything before), as its income records say.
        """
        if self.client is not None:
            return self._book_exchange_funding(conn)
        if self.paper is None:
            return FundingReport()
        if self.funding_since is None:
            self.funding_since = first_fill_time(conn, self.account_id, self.trader.symbol)
            if self.funding_since is None:
                return FundingReport()  # never held anything: nothing to settle
        report = settle_funding(
            conn, self.account_id, self.trader.symbol, since=self.funding_since, until=until
        )
        self.funding.booked.extend(report.booked)
        return report

    def _book_exchange_funding(self, conn: psycopg.Connection) -> FundingReport:
        assert self.client is not None and self.funding_since is not None
        report = FundingReport()
        since_ms = int(self.funding_since.timestamp() * 1000)
        for income in self.client.funding_income(self.trader.symbol, start_ms=since_ms):
            at = datetime.fromtimestamp(income.time_ms / 1000, tz=UTC)
            if income.time_ms < since_ms or income.asset != "USDT":
                continue
            detail = {"source": "exchange income", "tran_id": income.tran_id}
            if book_funding_income(conn, self.account_id, self.trader.symbol, at,
                                   income.amount, detail):  # fmt: skip
                report.booked.append((at, income.amount))
        self.funding.booked.extend(report.booked)
        return report

    def start(self, conn: psycopg.Connection) -> ReconciliationReport:
        """Take the lease, pass the start-up reconciliation, then (live) sync the cash.

        The cash is synced only once the lease is held and reconciliation has booked every
        fill the exchange holds: synced earlier, fills a crashed engine left unbooked would be
        counted twice (in the sync and again when booked).

        Raises:
            TradingRefusedError: If another engine holds the lease or reconciliation fails.
            TradingSetupError: If the exchange reports no USDT balance.
        """
        report = self.use(conn).start()
        if self.client is not None:
            self._sync_cash(conn)
        return report

    def _sync_cash(self, conn: psycopg.Connection) -> None:
        """Book the difference between the exchange's USDT wallet and the ledger's cash, once.

        Funding the exchange books from now on is brought in from its income records.
        """
        assert self.client is not None
        wallet = self.trader.broker.balance()
        self.funding_since = datetime.fromtimestamp(self.trader.clock() / 1000, tz=UTC)
        if wallet is None:
            raise TradingSetupError(f"the BingX account {self.account_id} reports no USDT balance")
        difference = wallet - ledger_cash(conn, self.account_id)
        key = f"sync:{self.trader.session_id}"
        if difference != 0 and book_deposit(conn, self.account_id, difference, key,
                                            self.funding_since):  # fmt: skip
            log.info("ledger cash of %s synced to the exchange wallet (%+s USDT)",
                     self.account_id, difference)  # fmt: skip

    def close(self) -> None:
        """Release the signed client's connections."""
        if self.client is not None:
            self.client.close()


def session_limits(conn: psycopg.Connection, mode: str) -> RiskLimits:
    """The risk limits in force: the latest stored version.

    A paper session with none stored stores the conservative defaults first (recorded as such);
    a live session never trades on limits nobody chose.

    Raises:
        TradingSetupError: In live mode, when no risk configuration is stored.
    """
    try:
        return load_risk_config(conn)
    except RiskConfigError as exc:
        if mode == "live":
            raise TradingSetupError(
                "live trading needs a stored risk configuration: store one with "
                "`goldrl risk set FILE` (see docs/runbook.md)"
            ) from exc
    save_risk_config(
        conn, DEFAULT_LIMITS, created_by="goldrl live (paper)",
        reason="no risk configuration was stored; paper sessions start on the defaults",
    )  # fmt: skip
    log.warning("no risk configuration stored: stored the defaults (version 1) for paper")
    return load_risk_config(conn)


def open_trading(
    conn: psycopg.Connection,
    settings: LiveSettings,
    instrument: InstrumentSpec,
    costs: CostModel,
    *,
    session_id: str,
    clock: Callable[[], int],
    credentials: Credentials | None = None,
    clock_speed: float = 1.0,
) -> TradingSession:
    """Open the session's account and trader (nothing is sent before :meth:`Trader.start`).

    Args:
        conn: The session's connection.
        settings: The session's settings (mode, account, quantities).
        instrument: The contract's rules valid now.
        costs: The cost model the paper broker fills under.
        session_id: The live session.
        clock: Venue time in epoch ms (the exchange's clock).
        credentials: Live mode's keys (read from the environment when omitted).
        clock_speed: The venue clock's speed (the simulator's; 1 on BingX).

    Raises:
        TradingSetupError: If live mode lacks a risk configuration.
        CredentialsError: If live mode has no usable keys.
        PositionModeError: If the live account is in hedge mode.
    """
    limits = session_limits(conn, settings.mode)
    quantity = Decimal(repr(settings.order_quantity))

    def venue_time() -> datetime:
        return datetime.fromtimestamp(clock() / 1000, tz=UTC)

    if settings.mode == "paper":
        account_id = settings.paper_account
        ensure_account(conn, account_id, "paper", "paper")
        if book_deposit(conn, account_id, Decimal(repr(settings.starting_cash)), "opening",
                        venue_time()):  # fmt: skip
            log.info("opened paper account %s with %s", account_id, settings.starting_cash)
        paper = PaperBroker(
            account_id, costs,
            # ``trader`` is bound below; read at call time, so the broker always sees the
            # connection the trader is using (it is replaced after a database restart).
            lambda symbol: ledger_position(trader.conn, account_id, symbol),
            venue_time,
        )  # fmt: skip
        machine = restore_machine(conn, account_id, instrument.symbol, limits)
        # Paper fills happen inside this process: an order not found at reconciliation was
        # never filled, whatever its age (no request can still be on its way).
        trader = Trader(
            conn, paper, instrument, limits, machine, session_id=session_id,
            order_quantity=quantity, leverage=settings.leverage, clock=clock,
            reconcile_grace=timedelta(0), clock_speed=clock_speed,
        )  # fmt: skip
        return TradingSession(trader=trader, paper=paper)
    credentials = credentials or Credentials.from_env()
    client = BingXTradingClient(settings.rest_url, credentials)
    try:
        client.require_one_way_mode()
        venue = "simulator" if client.simulated else "bingx"
        account_id = f"{venue}:{client.key_id}"
        ensure_account(conn, account_id, "live", venue)
        leverage = client.leverage(instrument.symbol)
        used = max(leverage.long, leverage.short)
        if used > limits.max_leverage:
            raise TradingSetupError(
                f"the account trades {instrument.symbol} at {used}x leverage, above the risk "
                f"limit max_leverage={limits.max_leverage} (risk configuration version "
                f"{limits.version}); lower it on BingX (or `goldrl account` with the simulator) "
                "or store a risk configuration that allows it"
            )
    except BaseException:
        client.close()
        raise
    broker = BingXBroker(client, account_id, venue)
    machine = restore_machine(conn, account_id, instrument.symbol, limits)
    trader = Trader(
        conn, broker, instrument, limits, machine, session_id=session_id,
        order_quantity=quantity, leverage=used, clock=clock, clock_speed=clock_speed,
    )  # fmt: skip
    return TradingSession(trader=trader, client=client)
