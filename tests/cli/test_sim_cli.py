"""``goldrl sim`` as a user runs it: a separate process, a trading account from the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.errors import PositionModeError
from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.bingx.trading import BingXTradingClient

KEY, SECRET = "cli-sim-key-0123456789", "cli-sim-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(port: int, env: dict[str, str], *args: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "goldrl_dagster.cli", "sim", "--port", str(port), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openApi/swap/v2/server/time", timeout=1)
            return process
        except httpx.TransportError:
            if process.poll() is not None:
                raise AssertionError(process.stdout.read()) from None
            time.sleep(0.2)
    process.kill()
    raise AssertionError("goldrl sim did not start")


@pytest.fixture
def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOLDRL_BINGX_API")}
    return env


def stop(process: subprocess.Popen) -> str:
    process.terminate()
    out, _ = process.communicate(timeout=30)
    return out


def test_the_simulator_opens_an_account_for_the_environment_credentials(base_env):
    port = free_port()
    env = {**base_env, "GOLDRL_BINGX_API_KEY": KEY, "GOLDRL_BINGX_API_SECRET": SECRET}
    process = start(port, env, "--one-way", "--balance", "2500")
    try:
        with BingXTradingClient(f"http://127.0.0.1:{port}", Credentials(KEY, SECRET)) as client:
            [balance] = client.balance()
            assert balance.balance == Decimal("2500")
            client.place_order(OrderRequest("XAUT-USDT", "BUY", Decimal("0.01"), "cli-1"))
            assert client.positions("XAUT-USDT")[0].quantity == Decimal("0.01")
    finally:
        out = stop(process)
    assert Credentials(KEY, SECRET).key_id in out
    assert KEY not in out and SECRET not in out


def test_without_credentials_the_simulator_serves_market_data_only(base_env):
    port = free_port()
    process = start(port, base_env)
    try:
        client = BingXTradingClient(f"http://127.0.0.1:{port}", Credentials(KEY, SECRET))
        with client, pytest.raises(Exception, match="100413"):
            client.balance()
    finally:
        out = stop(process)
    assert "no simulated trading account" in out


def test_the_default_account_is_in_hedge_mode_like_bingx(base_env):
    port = free_port()
    env = {**base_env, "GOLDRL_BINGX_API_KEY": KEY, "GOLDRL_BINGX_API_SECRET": SECRET}
    process = start(port, env)
    try:
        client = BingXTradingClient(f"http://127.0.0.1:{port}", Credentials(KEY, SECRET))
        with client, pytest.raises(PositionModeError):
            client.place_order(OrderRequest("XAUT-USDT", "BUY", Decimal("0.01"), "cli-2"))
    finally:
        stop(process)
