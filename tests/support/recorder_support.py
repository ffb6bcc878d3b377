"""The recorder tests' simulator settings and configuration."""

from __future__ import annotations

from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.recorder.service import RecorderConfig

# 40 days after listing, 30.5 s into a minute: history is short, so servers start fast.
ANCHOR_MS = GENESIS_MS + 40 * DAY_MS + 30_500


def config_for(sim: SimulatorServer, **overrides: object) -> RecorderConfig:
    """A recorder configuration for ``sim``: quick flushes, beats and reconnects."""
    settings: dict[str, object] = {
        "ws_url": sim.ws_url,
        "rest_url": sim.base_url,
        "flush_seconds": 0.2,
        "heartbeat_seconds": 0.5,
        "reconnect_backoff": (0.05, 0.2),
        "restart_backoff": (0.1, 0.5),
        "idle_timeout": 5.0,
    }
    settings.update(overrides)
    return RecorderConfig(**settings)  # type: ignore[arg-type]
