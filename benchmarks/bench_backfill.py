"""Backfill benchmark: one simulated year of 1m candles through the real client, paced.

The simulator enforces BingX's per-IP limit (a sliding window, by default the real 500 requests
per 10 s) and the real :class:`BingXRestClient` backfills with ``klines_range``:

* goldrl: paced by a :class:`LocalRateBudget` set to the enforced limit;
* baseline: the simplest correct client, unpaced, retrying 429s with jittered backoff.

Pacing efficiency is measured without boundary effects: a sliding window of ``limit`` requests
per ``window`` seconds allows request ``i`` no earlier than ``window`` after request
``i - limit``, so ``window / mean(t[i] - t[i - limit])`` is the fraction of the allowed rate
achieved in steady state (1.0 is the most any client may send). Targets: >= 90 % and zero 429s.

Run::

    uv run python benchmarks/bench_backfill.py                       # 500/10 s, 200-row pages
    uv run python benchmarks/bench_backfill.py --limit 60 --page-limit 1440

A page of fewer rows than BingX's 1440 maximum makes the year span many windows at the real
limit (366 pages would all fit in the first window's burst and measure nothing).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import dataclass

import httpx

from goldrl_dagster.lib.bingx.ratelimit import LocalRateBudget
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.limits import SimRateLimits
from goldrl_dagster.lib.bingx.simulator.market import DAY_MS, GENESIS_MS, MINUTE_MS
from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer


class Recording(httpx.HTTPTransport):
    """Records the send time and status of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        response = super().handle_request(request)
        with self._lock:
            self.sent.append((started, response.status_code))
        return response


@dataclass
class Result:
    name: str
    requests: int
    refused: int
    seconds: float
    candles: int
    efficiency: float
    rate: float


def backfill(
    name: str, sim: SimulatorServer, days: int, page_limit: int, budget: LocalRateBudget | None,
    limit: int, window: float,
) -> Result:  # fmt: skip
    transport = Recording()
    start, end = GENESIS_MS, GENESIS_MS + days * DAY_MS
    before = sim.rate_limit_stats()["refused"]
    started = time.monotonic()
    with BingXRestClient(
        sim.base_url, transport=transport, rate_budget=budget, max_retries=20,
        rate_limit_backoff=(0.5, 4.0),
    ) as client:  # fmt: skip
        candles = client.klines_range("XAUT-USDT", "1m", start, end, page_limit=page_limit)
        client_refused = client.rate_limited
    seconds = time.monotonic() - started
    times = [k.open_time_ms for k in candles]
    if times != list(range(start, end, MINUTE_MS)):
        raise SystemExit(f"{name}: backfill returned {len(times)} candles, not the full year")
    refused = sim.rate_limit_stats()["refused"] - before
    if refused != client_refused:
        raise SystemExit(f"{name}: server refused {refused}, client saw {client_refused}")
    granted = sorted(t for t, status in transport.sent if status == 200)
    gaps = [granted[i] - granted[i - limit] for i in range(limit, len(granted))]
    efficiency = window / statistics.fmean(gaps) if gaps else float("nan")
    return Result(
        name, len(transport.sent), refused, seconds, len(candles), efficiency,
        limit / statistics.fmean(gaps) if gaps else float("nan"),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--limit", type=int, default=500, help="requests per window")
    parser.add_argument("--window", type=float, default=10.0, help="window, seconds")
    parser.add_argument("--page-limit", type=int, default=200, help="rows per request")
    parser.add_argument("--slack", type=float, default=0.02, help="budget's window stretch")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)

    limits = SimRateLimits({"market": (args.limit, args.window)}, ban_after=10**6)
    anchor = GENESIS_MS + (args.days + 1) * DAY_MS
    print(f"warming up a simulator with {args.days + 1} days of history …", file=sys.stderr)
    results = []
    with SimulatorServer(anchor_ms=anchor, speed=1.0, rate_limits=limits) as sim:
        budget = LocalRateBudget({"market": (args.limit, args.window)}, slack=args.slack)
        results.append(
            backfill(
                "goldrl: paced by LocalRateBudget",
                sim,
                args.days,
                args.page_limit,
                budget,
                args.limit,
                args.window,
            )
        )
        if not args.skip_baseline:
            time.sleep(args.window * 1.1)  # let the server's window drain
            results.append(
                backfill(
                    "baseline: unpaced, retries 429s",
                    sim,
                    args.days,
                    args.page_limit,
                    None,
                    args.limit,
                    args.window,
                )
            )

    allowed = args.limit / args.window
    print(
        f"\nBackfill of {args.days} days of 1m candles (XAUT-USDT), limit {args.limit} requests "
        f"/ {args.window:g} s (= {allowed:g} req/s), {args.page_limit} rows per request; "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}\n"
    )
    print("| client | requests | 429s | steady req/s | of allowed | candles/s | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {r.requests} | {r.refused} | {r.rate:.1f} | {r.efficiency:.1%} | "
            f"{r.candles / r.seconds:,.0f} | {r.seconds:.1f} |"
        )
    paced = results[0]
    ok = paced.efficiency >= 0.90 and paced.refused == 0
    print(f"\ntargets (>= 90 % of the allowed rate, zero 429s): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
