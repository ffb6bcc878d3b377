"""``goldrl account`` against the simulator exchange, in-process."""

from __future__ import annotations

from decimal import Decimal

import pytest
from typer.testing import CliRunner

from goldrl_dagster.cli import app
from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.bingx.trading import BingXTradingClient

KEY, SECRET = "account-cli-key-12345", "account-cli-secret-67890"


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(seed=7, anchor_ms=GENESIS_MS + 40 * DAY_MS + 30_500) as server:
        yield server


@pytest.fixture
def env(sim, monkeypatch):
    monkeypatch.setenv("GOLDRL_BINGX_BASE_URL", sim.base_url)
    monkeypatch.setenv("GOLDRL_BINGX_API_KEY", KEY)
    monkeypatch.setenv("GOLDRL_BINGX_API_SECRET", SECRET)


def test_account_shows_mode_money_positions_and_orders(sim, env):
    sim.create_account(KEY, SECRET, balance="5000", hedge_mode=False)
    with BingXTradingClient(sim.base_url, Credentials(KEY, SECRET)) as client:
        client.place_order(OrderRequest("XAUT-USDT", "BUY", Decimal("0.1"), "cli-long"))
        resting = OrderRequest(
            "XAUT-USDT", "SELL", Decimal("0.1"), "cli-rest", type="LIMIT", price=Decimal("99999")
        )
        client.place_order(resting)
    result = CliRunner().invoke(app, ["account"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "SIMULATOR" in out and Credentials(KEY, SECRET).key_id in out
    assert "position mode: one-way" in out and "leverage 5/5, margin CROSSED" in out
    assert "positions: 1" in out and "XAUT-USDT +0.1000" in out
    assert "open orders: 1" in out and "client cli-rest" in out
    assert KEY not in out and SECRET not in out


def test_a_hedge_mode_account_is_named_and_refused(sim, env, monkeypatch):
    monkeypatch.setenv("GOLDRL_BINGX_API_KEY", "hedge-" + KEY)
    sim.create_account("hedge-" + KEY, SECRET)
    result = CliRunner().invoke(app, ["account"])
    assert result.exit_code == 2
    assert "position mode: hedge" in result.output and "refusing" in result.output


def test_missing_or_refused_credentials_are_one_plain_line(sim, env, monkeypatch):
    monkeypatch.delenv("GOLDRL_BINGX_API_SECRET")
    result = CliRunner().invoke(app, ["account"])
    assert result.exit_code == 1 and "GOLDRL_BINGX_API_SECRET" in result.output
    monkeypatch.setenv("GOLDRL_BINGX_API_SECRET", "wrong-secret")
    result = CliRunner().invoke(app, ["account"])
    assert result.exit_code == 1 and "100001" in result.output  # signature refused
    assert "Traceback" not in result.output
