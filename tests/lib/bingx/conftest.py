"""Fixtures: real simulator servers on free local ports."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.ratelimit import DEFAULT_LIMITS, LocalRateBudget
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.bingx.trading import TRADING_SLACK, BingXTradingClient

# 40 days after listing, 30.5 s into a minute: history is short, so servers start fast.
ANCHOR_MS = GENESIS_MS + 40 * DAY_MS + 30_500


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    """A real-time simulator (speed 1) for REST tests."""
    with SimulatorServer(seed=7, speed=1.0, anchor_ms=ANCHOR_MS) as server:
        yield server


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[BingXRestClient]:
    with BingXRestClient(sim.base_url, sleep=lambda _: None) as rest:
        yield rest


@pytest.fixture
def fast_sim() -> Iterator[SimulatorServer]:
    """A simulator running 120x (a minute every half second) with quick pushes and pings."""
    with SimulatorServer(
        seed=11, speed=120.0, anchor_ms=ANCHOR_MS, push_interval=0.05, ping_interval=0.5
    ) as server:
        yield server


@pytest.fixture
def start_sim() -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators with custom settings (anchored like the others); stopped afterwards."""
    servers: list[SimulatorServer] = []

    def start(**kwargs: object) -> SimulatorServer:
        kwargs.setdefault("anchor_ms", ANCHOR_MS)
        server = SimulatorServer(**kwargs).start()  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- trading: a simulator exchange, accounts and signed clients ------------------------------


@pytest.fixture(scope="module")
def exchange_sim() -> Iterator[SimulatorServer]:
    """A real-time simulator whose exchange the trading tests open accounts on."""
    with SimulatorServer(seed=7, speed=1.0, anchor_ms=ANCHOR_MS, push_interval=0.05) as server:
        yield server


@pytest.fixture(scope="module")
def order_budget() -> LocalRateBudget:
    """One budget for every client of a module: they share one IP, as in production."""
    return LocalRateBudget(DEFAULT_LIMITS, slack=TRADING_SLACK)


@dataclass
class Trader:
    """A simulated account and a signed client for it."""

    client: BingXTradingClient
    api_key: str
    secret: str


@pytest.fixture
def make_trader(
    exchange_sim: SimulatorServer, order_budget: LocalRateBudget
) -> Iterator[Callable[..., Trader]]:
    """Open a fresh simulated account (one-way unless asked) with a signed client for it."""
    clients: list[BingXTradingClient] = []

    def make(*, hedge_mode: bool = False, balance: str = "10000", **kwargs: object) -> Trader:
        api_key, secret = secrets.token_hex(16), secrets.token_hex(32)
        exchange_sim.create_account(api_key, secret, balance=balance, hedge_mode=hedge_mode)
        kwargs.setdefault("rate_budget", order_budget)
        kwargs.setdefault("sleep", lambda _: None)
        client = BingXTradingClient(
            exchange_sim.base_url,
            Credentials(api_key, secret),
            **kwargs,  # type: ignore[arg-type]
        )
        clients.append(client)
        # So that injected faults meet the request under test, not these first reads.
        client.sync_clock()
        if not hedge_mode:
            client.require_one_way_mode()
        return Trader(client, api_key, secret)

    yield make
    for client in clients:
        client.close()
