"""Opening a session's account: paper defaults, live refusals, paper funding from the ledger."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.errors import PositionModeError
from goldrl_dagster.lib.market.instrument import InstrumentSpec
from goldrl_dagster.lib.risk import DEFAULT_LIMITS
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.storage.ledger_store import FillRecord, book_fill, ledger_cash
from goldrl_dagster.lib.storage.order_store import OrderIntent, commit_intent
from goldrl_dagster.lib.storage.risk_store import load_risk_config
from live_engine.settings import LiveSettings
from live_engine.trading import TradingSetupError, open_trading

XAUT = "XAUT-USDT"
SPEC = InstrumentSpec(XAUT, "XAUT", "USDT", 2, 4, 0.0005, 2.0, 0.0002, 0.0005, 50, 50)
T0 = datetime(2025, 3, 1, tzinfo=UTC)
D = Decimal


def settings(mode: str = "paper", rest_url: str = "http://127.0.0.1:9", **changes) -> LiveSettings:
    return LiveSettings(XAUT, "1m", rest_url, "ws://127.0.0.1:9", mode=mode, **changes)


@pytest.fixture
def conn(clean_database):
    with clean_database.connect() as connection:
        yield connection


def open_paper(conn, **changes):
    return open_trading(conn, settings(**changes), SPEC, CostModel.from_instrument(SPEC),
                        session_id="s1", clock=lambda: int(T0.timestamp() * 1000))  # fmt: skip


def test_a_first_paper_session_stores_the_defaults_and_opens_the_account_once(conn):
    trading = open_paper(conn, paper_account="paper:desk", starting_cash=2500.0)
    assert trading.account_id == "paper:desk" and trading.paper is not None
    assert load_risk_config(conn) == DEFAULT_LIMITS
    stored = conn.execute("SELECT created_by, reason FROM risk_configs").fetchone()
    assert stored[0] == "goldrl live (paper)" and "no risk configuration was stored" in stored[1]
    open_paper(conn, paper_account="paper:desk", starting_cash=9999.0)  # a restart
    assert ledger_cash(conn, "paper:desk") == D("2500.0")  # opened once, never topped up


def test_live_mode_refuses_without_a_risk_configuration(conn, simulator):
    live = settings("live", rest_url=simulator.base_url)
    with pytest.raises(TradingSetupError, match="needs a stored risk configuration"):
        open_trading(conn, live, SPEC, CostModel.from_instrument(SPEC), session_id="s1",
                     clock=lambda: 0, credentials=Credentials("k", "s"))  # fmt: skip
    assert conn.execute("SELECT count(*) FROM risk_configs").fetchone()[0] == 0


def test_live_mode_refuses_a_hedge_mode_account(conn, simulator):
    from goldrl_dagster.lib.storage.risk_store import save_risk_config

    save_risk_config(conn, DEFAULT_LIMITS, created_by="test", reason="hedge test")
    key, secret = f"hedge-{secrets.token_hex(4)}", secrets.token_hex(16)
    simulator.create_account(key, secret, hedge_mode=True)
    live = settings("live", rest_url=simulator.base_url)
    with pytest.raises(PositionModeError, match="hedge mode"):
        open_trading(conn, live, SPEC, CostModel.from_instrument(SPEC), session_id="s1",
                     clock=lambda: 0, credentials=Credentials(key, secret))  # fmt: skip


def test_paper_funding_settles_from_the_first_fill_once(conn):
    trading = open_paper(conn, paper_account="paper:funding")
    assert trading.settle_funding(conn, T0 + timedelta(days=1)).booked == []  # never held
    commit_intent(conn, OrderIntent(
        "c1", "paper:funding", None, None, "operator", XAUT, "BUY", "MARKET", D("0.05"), None,
        False, SPEC.content_sha256(),
    ))  # fmt: skip
    book_fill(conn, FillRecord("f1", "c1", "paper:funding", XAUT, "BUY", D("0.05"), D("2000"),
                               D("0.05"), T0 + timedelta(hours=1), "paper"))  # fmt: skip
    for hours, rate in ((0, "0.0005"), (8, "0.0001"), (16, "-0.0002")):
        at = T0 + timedelta(hours=hours)
        conn.execute(
            "INSERT INTO funding_rates (instrument, funding_time, funding_rate, source) "
            "VALUES (%s, %s, %s, 'simulator')", (XAUT, at, D(rate)),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO mark_price_candles (instrument, interval, open_time, open, high, low, "
            "close, volume, source) VALUES (%s, '1m', %s, 1, 1, 1, 2000, 0, 'simulator')",
            (XAUT, at - timedelta(minutes=1)),
        )  # fmt: skip
    conn.commit()
    report = trading.settle_funding(conn, T0 + timedelta(days=1))
    # Held from 01:00: the 00:00 settlement is not charged; a long pays positive rates.
    assert [amount for _, amount in report.booked] == [D("-0.0100"), D("0.0200")]
    assert trading.settle_funding(conn, T0 + timedelta(days=1)).booked == []  # once


def test_live_funding_comes_from_the_exchange_income_once(conn, simulator):
    from goldrl_dagster.lib.bingx.orders import OrderRequest
    from goldrl_dagster.lib.bingx.trading import BingXTradingClient
    from goldrl_dagster.lib.storage.risk_store import save_risk_config

    save_risk_config(conn, DEFAULT_LIMITS, created_by="test", reason="live funding test")
    key, secret = f"fund-{secrets.token_hex(4)}", secrets.token_hex(16)
    simulator.create_account(key, secret, balance="5000", hedge_mode=False)
    credentials = Credentials(key, secret)
    with BingXTradingClient(simulator.base_url, credentials) as client:
        client.set_leverage(XAUT, 2)
        now_ms = client.sync_clock() + int(datetime.now(UTC).timestamp() * 1000)
        live = settings("live", rest_url=simulator.base_url)
        trading = open_trading(conn, live, SPEC, CostModel.from_instrument(SPEC),
                               session_id="s-fund", clock=client.clock.now_ms,
                               credentials=credentials)  # fmt: skip
        try:
            assert ledger_cash(conn, trading.account_id) == 0  # nothing before the start
            conn.execute(
                "INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
                "VALUES ('s-fund', 'live', %s, 'ws://x')", (XAUT,),
            )  # fmt: skip
            conn.commit()
            assert trading.start(conn).passed
            # The wallet, booked once the lease is held and reconciliation passed.
            assert ledger_cash(conn, trading.account_id) == D("5000")
            client.place_order(OrderRequest(XAUT, "BUY", D("0.05"), "fund-open"))
            # A settlement while the session runs (the simulator's own funding step).
            simulator.exchange._settle_funding(XAUT, now_ms + 60_000)
            paid = [i.amount for i in client.funding_income(XAUT)]
            assert len(paid) == 1 and paid[0] != 0
            later = datetime.fromtimestamp((now_ms + 120_000) / 1000, tz=UTC)
            report = trading.settle_funding(conn, later)
            assert [amount for _, amount in report.booked] == paid
            assert trading.settle_funding(conn, later).booked == []  # once
            kinds = conn.execute(
                "SELECT kind, amount FROM ledger_entries WHERE account_id = %s AND kind = "
                "'funding'", (trading.account_id,),
            ).fetchall()  # fmt: skip
            assert kinds == [("funding", paid[0])]
        finally:
            trading.close()
