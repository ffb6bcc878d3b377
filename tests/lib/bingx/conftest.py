"""Fixtures: real simulator servers on free local ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer

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
