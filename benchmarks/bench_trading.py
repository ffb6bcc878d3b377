"""Trading round trips against the simulator exchange on loopback: place → ack, and query.

The real signed client (:class:`BingXTradingClient`) places ``--orders`` MARKET orders on a
simulator account and queries each one back by client id, timing every request. Both sides are
unpaced (no rate budget, no simulator limits) so the numbers are the cost of one request, not of
BingX's 3 orders/s. Baseline, in the same process against the same server: an unsigned public GET
of the server time through a plain ``httpx.Client`` (transport + JSON envelope only), so the
ratio shows what signing, validation, matching and parsing add.

Run::

    uv run python benchmarks/bench_trading.py --orders 1000
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from decimal import Decimal

import httpx

from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.orders import OrderRequest
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer
from goldrl_dagster.lib.bingx.trading import BingXTradingClient


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "case": name,
        "n": len(ms),
        "p50": statistics.median(ms),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    args = parser.parse_args()
    anchor = GENESIS_MS + 40 * DAY_MS + 30_500
    with SimulatorServer(seed=7, anchor_ms=anchor, rate_limits=None) as sim:
        sim.create_account("bench-key", "bench-secret", balance="100000000", hedge_mode=False)
        client = BingXTradingClient(
            sim.base_url, Credentials("bench-key", "bench-secret"), rate_budget=None
        )
        client.sync_clock()
        client.require_one_way_mode()
        baseline_http = httpx.Client(base_url=sim.base_url)
        place, query, baseline = [], [], []
        for i in range(args.orders):
            side = "BUY" if i % 2 == 0 else "SELL"  # stay near flat: margin never binds
            request = OrderRequest("XAUT-USDT", side, Decimal("0.01"), f"bench-{i}")
            started = time.perf_counter()
            client.place_order(request)
            place.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.query_order("XAUT-USDT", client_order_id=request.client_order_id)
            query.append(time.perf_counter() - started)
            started = time.perf_counter()
            baseline_http.get("/openApi/swap/v2/server/time").json()
            baseline.append(time.perf_counter() - started)
        client.close()
        baseline_http.close()
    rows = [
        summary("place -> ack (signed POST, matched)", place),
        summary("query by client id (signed GET)", query),
        summary("baseline: unsigned GET server time", baseline),
    ]
    base = rows[-1]["p50"]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"load average before/after: {os.getloadavg()[0]:.2f}")
    print("| case | n | p50 ms | p99 ms | max ms | p50 / baseline p50 |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['case']} | {row['n']} | {row['p50']:.2f} | {row['p99']:.2f} | "
            f"{row['max']:.2f} | {row['p50'] / base:.1f}x |"
        )


if __name__ == "__main__":
    main()
