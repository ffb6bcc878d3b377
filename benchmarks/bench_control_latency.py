"""Operator control latency: a command issued → applied and answered by a running engine.

A paper session of the real service (``run_live_engine``) trades a small PPO champion against
the BingX simulator (60x: a bar closes every real second) on a real embedded PostgreSQL. The
script issues ``pause`` and ``unpause`` alternately (``lib/control``, as ``goldrl ops`` and the
operations jobs do) and measures, per command:

* **answered** — wall time from the issuing transaction's commit to the command's row showing
  ``applied`` (polled every 5 ms on a separate connection): NOTIFY → claim → apply on the
  trading thread → acknowledgement with its audit entry;
* the database's own timestamps ``acknowledged_at - issued_at``.

The baseline, in the same process and on the same database: issuing a command and reading it
back with no engine (two transactions: the floor of any command round trip here). The poll
fallback (``control_poll_seconds``) only matters for a missed notification and is not timed.

Run::

    uv run python benchmarks/bench_control_latency.py --commands 40
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=40, help="commands to time")
    return parser.parse_args()


def _summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{label}: n={len(values)} median {statistics.median(values) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, max {max(values) * 1000:.1f} ms"
    )


def main() -> None:
    args = _parse()
    home = Path(tempfile.mkdtemp(prefix="goldrl-bench-control-"))
    os.environ["GOLDRL_HOME"] = str(home)
    os.environ.pop("GOLDRL_DATABASE_URL", None)

    import torch
    from live_engine_support import SYMBOL, promote_champion, register_candidate_model

    from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
    from goldrl_dagster.lib.control.commands import issue, load_command
    from goldrl_dagster.lib.runtime import open_runtime
    from live_engine.service import run_live_engine
    from live_engine.settings import LiveSettings

    torch.set_num_threads(1)
    db = open_runtime().db
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")

    def floor() -> float:
        began = time.perf_counter()
        command = issue(db, action="pause", instrument="PAXG-USDT", interval="1m",
                        actor="bench", reason="baseline")  # fmt: skip
        load_command(db, command.command_id)
        return time.perf_counter() - began

    with SimulatorServer(seed=7, speed=60.0) as simulator:
        register_candidate_model(simulator.base_url, "ppo-bench-ctl", home / "model")
        promote_champion("ppo-bench-ctl")
        settings = LiveSettings(
            instrument=SYMBOL, interval="1m", rest_url=simulator.base_url,
            ws_url=simulator.ws_url, duration_seconds=3600.0, ood_guard="off",
            champion_poll_seconds=600.0, control_poll_seconds=600.0,
        )  # fmt: skip

        async def session() -> tuple[list[float], list[float]]:
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_live_engine(settings, stop=stop, install_signals=False)
            )
            await asyncio.sleep(8.0)  # start-up: history, reconciliation, first bars
            wall, stamped = [], []
            for n in range(args.commands):
                action = "pause" if n % 2 == 0 else "unpause"

                def round_trip(action: str = action) -> tuple[float, float]:
                    command = issue(db, action=action, instrument=SYMBOL, interval="1m",
                                    actor="bench", reason="latency")  # fmt: skip
                    began = time.perf_counter()
                    while True:
                        row = load_command(db, command.command_id)
                        if row.finished:
                            break
                        time.sleep(0.005)
                    assert row.status == "applied", row.describe()
                    assert row.acknowledged_at is not None
                    return (time.perf_counter() - began,
                            (row.acknowledged_at - row.issued_at).total_seconds())  # fmt: skip

                took, db_took = await asyncio.to_thread(round_trip)
                wall.append(took)
                stamped.append(db_took)
                await asyncio.sleep(0.3)
            stop.set()
            await task
            return wall, stamped

        wall, stamped = asyncio.run(session())
    base = [floor() for _ in range(args.commands)]
    print(_summary("issued -> applied and answered (wall)", wall))
    print(_summary("issued_at -> acknowledged_at (database clock)", stamped))
    print(_summary("baseline: issue + read back, no engine", base))
    print(f"ratio (median answered / median baseline): "
          f"{statistics.median(wall) / statistics.median(base):.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
