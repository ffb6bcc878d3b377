"""Fixtures: a fast simulator for the recorder tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from tests.support.recorder_support import ANCHOR_MS


@pytest.fixture
def rec_sim() -> Iterator[SimulatorServer]:
    """A simulator at 60x (a minute a second) with quick pushes, no rate limits."""
    with SimulatorServer(
        seed=11,
        speed=60.0,
        anchor_ms=ANCHOR_MS,
        push_interval=0.05,
        ping_interval=2.0,  # a loaded machine must not miss a Pong and look like a disconnect
        rate_limits=None,
    ) as server:
        yield server
