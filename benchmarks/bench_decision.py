"""Decision latency of the live engine: one closed bar → features → policy → risk → paper order.

Feeds ``--bars`` seeded 1m bars (after the ``ta`` v2 warm-up) through the real ``DecisionLoop``
of a started paper session (``open_session``: its own ``paper:<uuid>`` ledger account, the lease,
the start-up reconciliation) with a small trained PPO policy and a real (embedded) PostgreSQL.
Each bar is handed to the loop as if it had just closed (the venue clock one second after its
close) and timed end to end: ledger reads, policy, decision insert, the trader's risk inputs and
gate, intent commit, the paper fill booked in the ledger and the decision's outcome. Stages
timed separately: features (``FeatureStream`` update), policy (``LoadedPolicy.act``) and the
trader (``Trader.rebalance``: risk inputs and check, and when it orders, intent, fill, ledger).

goldrl: everything through the session's one persistent connection (``SessionWriter``).
Baseline, same process, same bars, same policy: the same session with a new connection opened
for every ``SessionWriter.run`` call, i.e. one per decision (the engine before ``SessionWriter``
opened one per write). Torch runs on one thread, as the
live service does. The policy decides freely, so only some bars send an order; the order path
on every bar, over real sockets, is ``bench_order_latency.py``.

Run::

    uv run python benchmarks/bench_decision.py --bars 2000
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from backtest_fixtures import XAUT
from candle_factory import random_walk_candles

from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.features.anchoring import compute_features_anchored
from goldrl_dagster.lib.features.pipeline import feature_matrix
from goldrl_dagster.lib.features.spec import TA_V2
from goldrl_dagster.lib.rl.costs import CostModel
from goldrl_dagster.lib.rl.policy import load_policy
from goldrl_dagster.lib.rl.train import TrainConfig, train_policy
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.registry import ModelRecord
from goldrl_dagster.lib.storage.server import stop_embedded
from live_engine import service
from live_engine.settings import LiveSettings
from live_engine.store import SessionWriter, stop_session

WARMUP_BARS = 900
GOLDRL = "goldrl: one persistent session connection (`SessionWriter`)"
BASELINE = "baseline: a new connection per decision (per `SessionWriter.run`)"
UNREACHABLE = "http://127.0.0.1:9"  # nothing is fetched: the bars are contiguous


def klines(n: int) -> tuple[list[Kline], pl.DataFrame]:
    """``WARMUP_BARS + n`` seeded 1m bars of XAUT, as klines and as a candle frame."""
    candles = random_walk_candles(WARMUP_BARS + n, seed=11, instrument=XAUT.symbol)
    bars = [
        Kline(int(t), o, h, lo, c, v)
        for t, o, h, lo, c, v in zip(
            candles["open_time"].dt.epoch("ms"), candles["open"], candles["high"],
            candles["low"], candles["close"], candles["volume"], strict=True,
        )
    ]  # fmt: skip
    return bars, candles


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class PerWriteConnection(SessionWriter):
    """The baseline: a new connection for every ``run`` call, closed after it."""

    def run(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work`` on a fresh connection."""
        with self.db.connect() as conn:
            return work(conn)


@dataclass
class Contender:
    """One started paper session and what its decisions cost."""

    loop: service.DecisionLoop
    writer: SessionWriter
    summary: service.LiveSummary
    stages: dict[str, list[float]]
    totals: list[float] = field(default_factory=list)
    ordered: list[bool] = field(default_factory=list)

    def decide(self, kline: Kline) -> None:
        """Hand the loop one closed bar, timed."""
        orders = self.summary.orders
        started = time.perf_counter()
        self.loop.on_closed_kline(kline)
        self.totals.append(time.perf_counter() - started)
        self.ordered.append(self.summary.orders > orders)


def start(
    runtime: Runtime,
    model: ModelRecord,
    policy_path: Path,
    rest: BingXRestClient,
    history: list[Kline],
    now: list[int],
    *,
    per_write: bool,
) -> Contender:
    """A started paper session of its own account, seeded and instrumented."""
    session = uuid.uuid4().hex
    settings = LiveSettings(
        XAUT.symbol, "1m", UNREACHABLE, "ws://127.0.0.1:9", model_id=model.model_id,
        order_quantity=0.05, paper_account=f"paper:{session}",
    )  # fmt: skip
    summary = service.LiveSummary(session, model.model_id, XAUT.symbol)
    writer = PerWriteConnection(runtime.db) if per_write else SessionWriter(runtime.db)
    stages: dict[str, list[float]] = {"features": [], "policy": [], "trader": []}

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[name].append(time.perf_counter() - started)

        return wrapper

    loop = service.open_session(
        runtime, settings, model, load_policy(policy_path), TA_V2, summary, rest,
        clock=lambda: now[0], writer=writer, instrument=XAUT,
    )  # fmt: skip
    loop.seed_history(history)
    loop.feature_row = timed("features", loop.feature_row)  # type: ignore[method-assign]
    loop.policy.act = timed("policy", loop.policy.act)  # type: ignore[method-assign]
    trader = loop.trading.trader
    trader.rebalance = timed("trader", trader.rebalance)  # type: ignore[method-assign]
    return Contender(loop, writer, summary, stages)


def run(
    runtime: Runtime, model: ModelRecord, policy_path: Path, bars: list[Kline]
) -> dict[str, Contender]:
    """Both sessions decide on every bar, in lockstep (alternating who goes first), so load
    from elsewhere on the shared machine hits them alike."""
    now = [bars[WARMUP_BARS].open_time_ms]
    with BingXRestClient(UNREACHABLE, max_retries=0) as rest:
        contenders = {
            GOLDRL: start(runtime, model, policy_path, rest, bars[:WARMUP_BARS], now,
                          per_write=False),
            BASELINE: start(runtime, model, policy_path, rest, bars[:WARMUP_BARS], now,
                            per_write=True),
        }  # fmt: skip
        order = list(contenders.values())
        for index, kline in enumerate(bars[WARMUP_BARS:]):
            now[0] = kline.open_time_ms + 61_000  # the bar closed a second ago
            for contender in order if index % 2 == 0 else reversed(order):
                contender.decide(kline)
        for contender in order:
            loop = contender.loop
            SessionWriter(runtime.db).run(lambda conn, loop=loop: loop.trading.use(conn).stop())
            contender.writer.close()
            stop_session(runtime.db, contender.summary.session_id, "benchmark over")
    return contenders


def main() -> None:
    """Train a small policy, run both paths over the same bars, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    home = tempfile.mkdtemp(prefix="goldrl-bench-")
    os.environ["GOLDRL_HOME"] = home
    os.environ.pop("GOLDRL_DATABASE_URL", None)
    runtime = open_runtime()
    try:
        bars, candles = klines(max(args.bars, 600))  # PPO needs > 512 usable bars to train
        bars = bars[: WARMUP_BARS + args.bars]
        batch = compute_features_anchored(candles, TA_V2)
        usable = ~batch["is_warmup"]
        bundle = train_policy(
            feature_matrix(batch.filter(usable), TA_V2),
            candles.filter(usable)["close"].to_numpy(), CostModel.from_instrument(XAUT),
            TrainConfig(total_timesteps=256, n_steps=128, batch_size=64),
            {"dataset_hash": "bench"}, Path(home) / "policy.zip",
        )  # fmt: skip
        artifact = runtime.artifacts.put_file(bundle)
        model = ModelRecord("bench-model", artifact, "bench", TA_V2.fingerprint,
                            load_policy(bundle).card)  # fmt: skip
        load_before = os.getloadavg()[0]
        results = run(runtime, model, bundle, bars)
        load_after = os.getloadavg()[0]
    finally:
        stop_embedded(runtime.settings)
        shutil.rmtree(home, ignore_errors=True)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"load average: {load_before:.2f} before, {load_after:.2f} after; bars: {args.bars}")
    print()
    print("| path | decisions | orders | p50 ms | p99 ms | with an order p50 / p99 | "
          "features p50 | policy p50 | trader p50 / p99 | rest p50 / p99 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = statistics.median(results[GOLDRL].totals)
    for name, c in results.items():
        ms = [t * 1000 for t in c.totals]
        trader = [t * 1000 for t in c.stages["trader"]]
        # Everything but features, policy and trader: ledger reads, decision insert, outcome.
        rest = [
            (t - f - p - d) * 1000
            for t, f, p, d in zip(
                c.totals, c.stages["features"], c.stages["policy"], c.stages["trader"],
                strict=True,
            )
        ]  # fmt: skip
        with_order = [t for t, o in zip(ms, c.ordered, strict=True) if o]
        s = c.summary
        print(
            f"| {name} | {s.decisions} | {s.orders} | {statistics.median(ms):.2f} | "
            f"{percentile(ms, 99):.2f} | "
            f"{statistics.median(with_order):.2f} / {percentile(with_order, 99):.2f} | "
            f"{statistics.median(c.stages['features']) * 1000:.2f} | "
            f"{statistics.median(c.stages['policy']) * 1000:.2f} | "
            f"{statistics.median(trader):.2f} / {percentile(trader, 99):.2f} | "
            f"{statistics.median(rest):.2f} / {percentile(rest, 99):.2f} |"
        )
    for name, c in results.items():
        s = c.summary
        print(f"{name}: {s.blocked} blocked, {s.held} held, {s.errors} errors, "
              f"p50 {statistics.median(c.totals) / base:.2f}x goldrl")  # fmt: skip


if __name__ == "__main__":
    main()
