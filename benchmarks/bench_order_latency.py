"""Order latency of the live engine: the kline push that closes a bar → the order request leaves.

The real service (``run_live_engine``: market stream, queue, trading thread, reconciler, account
stream, heartbeat) trades a small PPO champion (``ta`` v2 features) against the BingX simulator
running in a **separate process** (real sockets, its own GIL) and a real embedded PostgreSQL.
Every bar sends an order: the policy runs, then its answer is replaced by short/long on
alternate bars, so each decision flips the position (an order of 2 × ``order_quantity``).

Per bar, on one clock (``time.perf_counter``):

* t0 **arrival** — the WebSocket frame whose push closes the bar (the next bar's first push)
  is returned by the connection (wrapped ``recv``);
* **decision-ready** — ``KlineStream`` yields the closed bar (after the REST confirmation of
  its final values when confirming);
* the engine's checkpoints (wrapped, nothing else changed): ``on_closed_kline`` entered,
  features, policy, decision insert, the risk check (``gate.check_order``), the broker's
  ``submit`` (intent committed and marked ``submitted`` before it);
* t1 **request leaves** — httpx's request hook for ``POST /trade/order`` (paper: the paper
  broker's ``submit`` is entered; no request exists);
* the response's headers arrive (httpx response hook), and t2 **ack recorded** — the executor's
  ``record_view`` has stored the venue's answer (``accepted``; paper: ``filled`` and booked).

Today's engine confirms each closed candle over REST before deciding
(``KlineStream(confirm_with_rest=True)``, the default with a REST client); the alternative is
to decide on the push (``confirm_with_rest=False``). Both run in the **same session**,
alternating every two bars, so both see the same load: the stream's ``_confirm`` flag is set
per bar by a wrapper in this script (``stream.py`` is unchanged). Each bar decided on the push
is then fetched over REST once its decision is done (a thread and client of its own) and
compared with the pushed values: "decide on the push, verify afterwards".

Also printed: a one-row durable commit and a read transaction timed alone on one connection
(the database's floor on this machine), the cost of the ledger reads against the accounts'
number of ledger entries, and which decisions waited for a reconciliation pass.

Benchmark-only settings (stated with the results): no rate budget on the client
(``rate_budget=None``) and none in the simulator — BingX's 3 orders/s never binds at one order
a minute, but at the simulator's speed it would pace every order; the risk limits are
``DEFAULT_LIMITS`` with the daily loss limit raised so the forced flips' fees do not halt the
account (every rule still runs; the trader judges data ages in real seconds on the simulator's
clock); the engine's own ``max_bar_age_seconds``, measured on the exchange clock, is multiplied
by the simulator's speed (the same tolerance in real time). Torch runs on one thread.

Run::

    uv run python benchmarks/bench_order_latency.py --bars 2000 --paper-bars 400
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import dataclasses
import logging
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from live_engine_support import promote_champion, register_candidate_model

from goldrl_dagster.lib.bingx import trading as trading_client
from goldrl_dagster.lib.bingx.credentials import Credentials
from goldrl_dagster.lib.bingx.models import Kline
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.stream import KlineStream
from goldrl_dagster.lib.execution import executor, gate
from goldrl_dagster.lib.features.spec import TA_V2
from goldrl_dagster.lib.market.candles import INTERVAL_MS
from goldrl_dagster.lib.risk import DEFAULT_LIMITS
from goldrl_dagster.lib.runtime import Runtime, open_runtime
from goldrl_dagster.lib.storage.account_state import read_account_state
from goldrl_dagster.lib.storage.ledger_store import ledger_cash
from goldrl_dagster.lib.storage.risk_store import save_risk_config
from goldrl_dagster.lib.storage.server import stop_embedded
from live_engine import service
from live_engine import trading as live_trading
from live_engine.settings import LiveSettings

SYMBOL = "XAUT-USDT"
STEP_MS = INTERVAL_MS["1m"]
ANCHOR = datetime(2025, 3, 10, 0, 0, tzinfo=UTC)  # the simulator's virtual "now" at start
CONFIRMED = "REST-confirmed (today)"
PUSHED = "decided on the push (REST check after)"
SKIP_BARS = 5  # the first decisions of a session (gap fill after seeding, cold caches)
KEY, SECRET = "bench-latency-key", "bench-latency-secret-0123456789abcdef"

# -- the simulator, in its own process ---------------------------------------------------


def serve_simulator(conn: Connection, speed: float, push_interval: float) -> None:
    """Run the simulator with one one-way account until told to stop (child process)."""
    from goldrl_dagster.lib.bingx.simulator.server import SimulatorServer

    with SimulatorServer(
        seed=7, speed=speed, anchor_ms=int(ANCHOR.timestamp() * 1000),
        push_interval=push_interval, ping_interval=2.0, rate_limits=None,
    ) as sim:  # fmt: skip
        sim.create_account(KEY, SECRET, balance="100000", hedge_mode=False)
        conn.send((sim.base_url, sim.ws_url))
        conn.recv()


# -- instrumentation -----------------------------------------------------------------------


class Probe:
    """Per-bar checkpoints, written by the event loop (stream) and the trading thread."""

    def __init__(self, rest_url: str) -> None:
        self.records: dict[int, dict[str, Any]] = {}
        self.current: dict[str, Any] | None = None
        self.last_frame = 0.0
        self.decided = 0
        self.streams: list[KlineStream] = []
        self.checks: list[tuple[float, float]] = []  # reconciler passes on the trading thread
        # "Verify over REST afterwards": a bar decided on the push is fetched once its decision
        # is done, on a thread and a client of its own, and compared with the pushed values.
        self.verifier = ThreadPoolExecutor(1, thread_name_prefix="bench-verify")
        self.verify_rest = BingXRestClient(rest_url)

    def close(self) -> None:
        """Wait for the verifications and release their client."""
        self.verifier.shutdown(wait=True)
        self.verify_rest.close()

    def verify(self, kline: Kline, record: dict[str, Any]) -> None:
        """Fetch a bar decided on the push over REST and compare (runs on the verifier)."""
        start = kline.open_time_ms
        final = self.verify_rest.klines_range(SYMBOL, "1m", start, start + STEP_MS, page_limit=1)
        record["verified"] = time.perf_counter()
        record["verify_match"] = final == [kline]

    def mark(self, name: str) -> None:
        """Time a checkpoint of the bar being decided (first time only)."""
        if self.current is not None:
            self.current.setdefault(name, time.perf_counter())

    def stream_factory(self) -> Callable[..., KlineStream]:
        """A ``KlineStream`` constructor that instruments the stream it builds."""

        def build(ws_url: str, symbol: str, interval: str, **kwargs: Any) -> KlineStream:
            stream = KlineStream(ws_url, symbol, interval, **kwargs)
            self.instrument_stream(stream)
            return stream

        return build

    def instrument_stream(self, stream: KlineStream) -> None:
        """Time each frame's arrival and each closed bar's yield; alternate REST confirmation."""
        probe = self
        channel = stream._channel
        real_open = channel._open

        async def open_connection() -> None:
            await real_open()
            ws = channel._ws
            assert ws is not None
            real_recv = ws.recv

            async def recv(*args: Any, **kwargs: Any) -> Any:
                frame = await real_recv(*args, **kwargs)
                probe.last_frame = time.perf_counter()
                return frame

            ws.recv = recv  # type: ignore[method-assign]

        channel._open = open_connection  # type: ignore[method-assign]
        real_advance = stream._advance

        async def advance(tracker: Any, kline: Kline) -> list[Kline]:
            current = tracker.open
            if current is not None and kline.open_time_ms > current.open_time_ms:
                # Two bars confirmed over REST, two decided on the push, and so on.
                stream._confirm = (current.open_time_ms // STEP_MS) % 4 < 2
                record = probe.records.setdefault(current.open_time_ms, {})
                record["confirmed"] = stream._confirm
                record["arrival"] = probe.last_frame
            finals = await real_advance(tracker, kline)
            for final in finals:
                record = probe.records.setdefault(final.open_time_ms, {})
                record.setdefault("arrival", probe.last_frame)
                record["ready"] = time.perf_counter()
            return finals

        stream._advance = advance  # type: ignore[method-assign]
        self.streams.append(stream)

    def instrument_loop(self, loop: service.DecisionLoop) -> None:
        """Checkpoints on the decision loop, its policy (forced flips), broker and client."""
        probe = self
        real_on_closed = loop.on_closed_kline

        def on_closed_kline(kline: Kline, *, superseded: bool = False) -> None:
            record = probe.records.setdefault(kline.open_time_ms, {})
            probe.current = record
            record["enter"] = time.perf_counter()
            orders = loop.summary.orders
            try:
                real_on_closed(kline, superseded=superseded)
            finally:
                record["done"] = time.perf_counter()
                record["ordered"] = loop.summary.orders > orders
                probe.current = None
                probe.decided += 1
                if record.get("confirmed") is False:
                    probe.verifier.submit(probe.verify, kline, record)

        loop.on_closed_kline = on_closed_kline  # type: ignore[method-assign]
        real_features = loop.feature_row

        def feature_row(kline: Kline) -> Any:
            try:
                return real_features(kline)
            finally:
                probe.mark("features")

        loop.feature_row = feature_row  # type: ignore[method-assign]
        real_check = loop.check

        def check(*, wake: bool = False) -> Any:
            started = time.perf_counter()
            try:
                return real_check(wake=wake)
            finally:
                probe.checks.append((started, time.perf_counter()))

        loop.check = check  # type: ignore[method-assign]
        real_act = loop.policy.act

        def act(observation: Any) -> int:
            probe.mark("policy_start")
            real_act(observation)  # the policy's cost is paid; its answer is replaced
            record = probe.current or {}
            bar = record.get("bar_ms", 0)
            probe.mark("policy")
            return 0 if (bar // STEP_MS) % 2 else 2  # short / long on alternate bars

        loop.policy.act = act  # type: ignore[method-assign]
        broker = loop.trading.broker
        real_submit = broker.submit

        def submit(order: Any) -> Any:
            probe.mark("submit")
            if loop.trading.client is None:
                probe.mark("sent")
            try:
                return real_submit(order)
            finally:
                probe.mark("response")

        broker.submit = submit  # type: ignore[method-assign]
        client = loop.trading.client
        if client is not None:

            def on_request(request: httpx.Request) -> None:
                record = probe.current
                if record is None:
                    return
                name = f"{request.method} {request.url.path}"
                if request.method == "POST" and request.url.path == trading_client.ORDER_PATH:
                    probe.mark("sent")
                # Signed requests of the decision before its order (e.g. a clock measurement)
                # and after it (e.g. the order's reconciliation).
                record.setdefault("after" if "sent" in record else "before", []).append(name)

            def on_response(response: httpx.Response) -> None:
                if response.request.url.path == trading_client.ORDER_PATH:
                    probe.mark("response")

            client._http.event_hooks = {"request": [on_request], "response": [on_response]}

    def install(self) -> Callable[[], None]:
        """Patch the service's and the execution layer's names; returns the undo."""
        probe = self
        saved: list[tuple[Any, str, Any]] = []

        def patch(module: Any, name: str, value: Any) -> None:
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)

        def after(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                try:
                    return function(*args, **kwargs)
                finally:
                    probe.mark(name)

            return wrapper

        def before(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                probe.mark(name)
                return function(*args, **kwargs)

            return wrapper

        real_open_session = service.open_session

        def open_session(*args: Any, **kwargs: Any) -> service.DecisionLoop:
            loop = real_open_session(*args, **kwargs)
            probe.instrument_loop(loop)
            return loop

        real_decide = service.DecisionLoop._decide

        def decide(loop: service.DecisionLoop, conn: Any, kline: Kline, *args: Any) -> None:
            if probe.current is not None:
                probe.current["bar_ms"] = kline.open_time_ms
            probe.mark("decide")
            return real_decide(loop, conn, kline, *args)

        patch(service, "open_session", open_session)
        patch(service.DecisionLoop, "_decide", decide)
        patch(service, "KlineStream", self.stream_factory())
        patch(service, "insert_decision", after("inserted", service.insert_decision))
        patch(gate, "check_order", before("risk_start", gate.check_order))
        patch(gate, "check_order", after("risk", gate.check_order))
        patch(executor, "record_view", after("ack", executor.record_view))

        def unpaced_client(*args: Any, **kwargs: Any) -> trading_client.BingXTradingClient:
            return trading_client.BingXTradingClient(*args, rate_budget=None, **kwargs)

        patch(live_trading, "BingXTradingClient", unpaced_client)

        def undo() -> None:
            for module, name, value in reversed(saved):
                setattr(module, name, value)

        return undo


# -- set-up --------------------------------------------------------------------------------


def register_champion(runtime: Runtime, rest: BingXRestClient, home: Path) -> str:
    """Train a small PPO policy on a simulated day and promote it, as the assets would."""
    del runtime  # the support helpers open it from the environment, as the tests do
    end = ANCHOR - timedelta(hours=1)
    model_id = "ppo-latency-bench"
    register_candidate_model(rest.base_url, model_id, home, end=end, hours=30, spec=TA_V2)
    promote_champion(model_id, end)
    return model_id


def store_limits(runtime: Runtime) -> None:
    """The default limits with a daily loss limit the forced flips' fees cannot reach.

    The trader judges the bar's and mark's ages in real seconds on the simulator's faster
    clock, so the age limits stay the defaults.
    """
    limits = dataclasses.replace(DEFAULT_LIMITS, daily_loss_limit=10_000.0)
    with runtime.db.connect() as conn:
        save_risk_config(conn, limits, created_by="bench_order_latency",
                         reason="latency benchmark: an order every bar")  # fmt: skip


async def run_session(settings: LiveSettings, probe: Probe, bars: int) -> service.LiveSummary:
    """Run the service until ``bars`` bars after the first few were decided."""
    stop = asyncio.Event()

    async def watch() -> None:
        while probe.decided < bars + SKIP_BARS:
            await asyncio.sleep(0.05)
        stop.set()

    watcher = asyncio.create_task(watch())
    try:
        return await service.run_live_engine(
            settings, stop=stop, install_signals=False, credentials=Credentials(KEY, SECRET)
        )
    finally:
        watcher.cancel()


# -- report --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


STAGES = (
    ("push arrival → bar yielded (stream; REST confirmation when on)", "arrival", "ready"),
    ("bar yielded → decision starts (queue, trading thread)", "ready", "enter"),
    ("features (`FeatureStream` update)", "enter", "features"),
    ("account / ledger reads + observation", "decide", "policy_start"),
    ("policy (`LoadedPolicy.act`)", "policy_start", "policy"),
    ("decision insert", "policy", "inserted"),
    ("risk inputs (`Trader.rebalance` up to the check)", "inserted", "risk_start"),
    ("risk check (`check_order`)", "risk_start", "risk"),
    ("intent commit + `submitted`", "risk", "submit"),
    ("request built and signed", "submit", "sent"),
    ("send → response (loopback + exchange)", "sent", "response"),
    ("response → ack recorded (`accepted` commit)", "response", "ack"),
)


def ms(record: dict[str, Any], start: str, end: str) -> float | None:
    """Milliseconds between two checkpoints of a bar, or None when one is missing."""
    if start not in record or end not in record:
        return None
    return (record[end] - record[start]) * 1000


def summarise(values: list[float]) -> str:
    """``p50 / p99`` of a list of milliseconds."""
    if not values:
        return "–"
    return f"{statistics.median(values):.2f} / {percentile(values, 99):.2f}"


def report(name: str, probe: Probe, summary: service.LiveSummary) -> dict[str, Any]:
    """Print the session's tables; returns the numbers for the comparison."""
    decided = [r for r in probe.records.values() if "done" in r and "enter" in r]
    decided.sort(key=lambda r: r["enter"])
    measured = decided[SKIP_BARS:]
    sent = [r for r in measured if "sent" in r and "arrival" in r]
    print(f"\n### {name}: {len(measured)} bars measured, {len(sent)} orders sent")
    print(f"summary: {summary.describe()}")
    streams = probe.streams
    print(
        f"stream: {sum(s.pushes for s in streams)} pushes, "
        f"{sum(s.corrections for s in streams)} REST corrections, "
        f"{sum(s.reconnects for s in streams)} reconnects"
    )
    before_order = Counter(" + ".join(r["before"]) for r in measured if r.get("before"))
    after_order = Counter(" + ".join(r.get("after", [])[1:]) or "nothing" for r in sent)
    print(f"signed requests before the order within a decision: {dict(before_order) or 'none'}")
    print(f"signed requests after the order within a decision: {dict(after_order)}")
    # At the simulator's speed a bar follows the last one's order and reconciliation within
    # 100 ms; on BingX the trading thread has a minute to finish them. Bars that found it busy
    # (the previous decision or a reconciliation pass still running) are shown apart too.
    checks = sorted(probe.checks)
    starts = [a for a, _ in checks]
    previous_done = 0.0
    for record in measured:
        if "ready" in record:
            i = bisect.bisect_left(starts, record["ready"])
            behind_check = any(b > record["ready"] for _, b in checks[max(0, i - 3) : i])
            record["busy"] = behind_check or previous_done > record["ready"]
        previous_done = record["done"]
    out: dict[str, Any] = {}
    print("\n| from push arrival | bars | → decision-ready p50 / p99 | → request leaves p50 / "
          "p90 / p99 / max | request → ack recorded p50 / p99 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    groups = [
        (CONFIRMED, lambda r: r.get("confirmed") is True),
        (PUSHED, lambda r: r.get("confirmed") is False),
        ("all", lambda r: True),
        (f"{CONFIRMED}, trading thread idle", lambda r: r["confirmed"] and not r["busy"]),
        (f"{PUSHED}, trading thread idle", lambda r: not r["confirmed"] and not r["busy"]),
    ]
    for label, wanted in groups:
        rows = [r for r in sent if "confirmed" in r and "busy" in r and wanted(r)]
        if not rows:
            continue
        ready = [ms(r, "arrival", "ready") for r in rows]
        total = [ms(r, "arrival", "sent") for r in rows]
        ack = [ms(r, "sent", "ack") for r in rows]
        out[label] = {"ready": ready, "total": total, "ack": ack}
        print(
            f"| {label} | {len(rows)} | {summarise(ready)} | "
            f"{statistics.median(total):.2f} / {percentile(total, 90):.2f} / "
            f"{percentile(total, 99):.2f} / {max(total):.2f} | {summarise(ack)} |"
        )
    print("\n| stage (bars that sent an order) | p50 / p99 ms (REST-confirmed) | "
          "p50 / p99 ms (on the push) |")  # fmt: skip
    print("|---|---:|---:|")
    for label, start, end in STAGES:
        cells = []
        for confirmed in (True, False):
            values = [ms(r, start, end) for r in sent if r.get("confirmed") == confirmed]
            cells.append(summarise([v for v in values if v is not None]))
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    pushed = [r for r in measured if r.get("confirmed") is False and "verified" in r]
    mismatched = sum(1 for r in pushed if not r["verify_match"])
    after = [ms(r, "sent", "verified") for r in pushed if "sent" in r]
    print(
        f"\nbars decided on the push and verified over REST afterwards: {len(pushed)}, "
        f"{mismatched} differed from REST; push arrival → verified "
        f"{summarise([ms(r, 'arrival', 'verified') for r in pushed])} ms, "
        f"request → verified {summarise([v for v in after if v is not None])} ms"
    )
    reads = [ms(r, "decide", "policy_start") for r in sent]
    risk_inputs = [ms(r, "inserted", "risk_start") for r in sent]
    if len(sent) >= 400:
        print(
            f"account reads, first / last 200 orders: {summarise(reads[:200])} / "
            f"{summarise(reads[-200:])} ms; risk inputs {summarise(risk_inputs[:200])} / "
            f"{summarise(risk_inputs[-200:])} ms"
        )
    slow = [r for r in sent if (ms(r, "ready", "enter") or 0) > 5]
    print(
        f"orders whose bar found the trading thread busy: {sum(r['busy'] for r in sent)}; "
        f"whose decision started > 5 ms after the bar was ready: {len(slow)} "
        f"({sum(r['busy'] for r in slow)} of them busy); reconciliation passes: "
        f"{len(probe.checks)}, {summarise([(b - a) * 1000 for a, b in probe.checks])} ms"
    )
    decision = [ms(r, "ready", "sent") for r in sent]
    print(f"\ndecision-ready → request leaves, all bars: {summarise(decision)} ms; "
          f"decision end to end (`on_closed_kline`, ack and outcome included): "
          f"{summarise([ms(r, 'enter', 'done') for r in measured])} ms")  # fmt: skip
    out["decision"] = decision
    return out


def database_floor(runtime: Runtime, n: int = 1000) -> dict[str, list[float]]:
    """Milliseconds of a one-row durable commit and of a read transaction, ``n`` times each."""
    out: dict[str, list[float]] = {"commit": [], "read": []}
    with runtime.db.connect() as conn:
        conn.execute("CREATE TABLE bench_commit_floor (id bigserial PRIMARY KEY, note text)")
        conn.commit()
        for _ in range(n):
            started = time.perf_counter()
            conn.execute("INSERT INTO bench_commit_floor (note) VALUES (%s)", ("x",))
            conn.commit()
            out["commit"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            conn.execute("SELECT count(*) FROM trading_accounts").fetchone()
            conn.commit()
            out["read"].append((time.perf_counter() - started) * 1000)
        conn.execute("DROP TABLE bench_commit_floor")
        conn.commit()
    return out


def ledger_read_cost(runtime: Runtime, account_id: str, n: int = 200) -> tuple[int, str, str]:
    """Ledger entries of an account, and p50 / p99 ms of the decision's account read
    (``read_account_state``) and of ``ledger_cash`` (the sum of the entries it contains)."""
    state, cash = [], []
    with runtime.db.connect() as conn:
        entries = conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE account_id = %s", (account_id,)
        ).fetchone()[0]
        conn.commit()
        for _ in range(n):
            started = time.perf_counter()
            read_account_state(conn, account_id, SYMBOL)
            state.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            ledger_cash(conn, account_id)
            cash.append((time.perf_counter() - started) * 1000)
    return int(entries), summarise(state), summarise(cash)


def main() -> None:
    """Start the simulator and the database, run the live and paper sessions, print tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2000, help="live bars (half confirmed)")
    parser.add_argument("--paper-bars", type=int, default=400, help="paper bars (0: none)")
    parser.add_argument("--speed", type=float, default=600.0, help="simulated s per real s")
    parser.add_argument("--push-interval", type=float, default=0.01, help="real s")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    home = Path(tempfile.mkdtemp(prefix="goldrl-bench-"))
    os.environ["GOLDRL_HOME"] = str(home)
    for name in ("GOLDRL_DATABASE_URL", "GOLDRL_SCHEMA"):
        os.environ.pop(name, None)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    simulator = context.Process(
        target=serve_simulator, args=(child, args.speed, args.push_interval), daemon=True
    )
    simulator.start()
    base_url, ws_url = parent.recv()
    runtime = open_runtime()
    results: dict[str, Any] = {}
    try:
        with BingXRestClient(base_url) as rest:
            model_id = register_champion(runtime, rest, home)
        store_limits(runtime)
        with trading_client.BingXTradingClient(base_url, Credentials(KEY, SECRET)) as client:
            client.set_leverage(SYMBOL, 2)
        base = LiveSettings(
            instrument=SYMBOL, interval="1m", rest_url=base_url, ws_url=ws_url, mode="live",
            order_quantity=0.05, max_bar_age_seconds=min(86_400.0, 90.0 * args.speed),
            duration_seconds=(args.bars + 60) * 60 / args.speed + 120,
        )  # fmt: skip
        load_before = os.getloadavg()
        floor_before = database_floor(runtime)
        sessions = [("live (simulator account over loopback)", base, args.bars)]
        if args.paper_bars > 0:
            paper = dataclasses.replace(
                base, mode="paper", model_id=model_id, paper_account=f"paper:{uuid.uuid4().hex}",
                duration_seconds=(args.paper_bars + 60) * 60 / args.speed + 120,
            )  # fmt: skip
            sessions.append(("paper (ledger-backed paper broker)", paper, args.paper_bars))
        for name, settings, bars in sessions:
            probe = Probe(base_url)
            undo = probe.install()
            started = time.monotonic()
            try:
                summary = asyncio.run(run_session(settings, probe, bars))
            finally:
                undo()
                probe.close()
            print(f"\n{name}: {time.monotonic() - started:.0f} s")
            results[name] = (probe, summary)
        floor = {k: floor_before[k] + v for k, v in database_floor(runtime).items()}
        ledger_costs = [
            (summary.account_id, *ledger_read_cost(runtime, summary.account_id))
            for _, summary in results.values()
        ]
        ledger_costs.append(("(an account with no entries)",
                             *ledger_read_cost(runtime, "paper:none")))  # fmt: skip
        load_after = os.getloadavg()
    finally:
        parent.send("stop")
        simulator.join(timeout=15)
        stop_embedded(runtime.settings)
        shutil.rmtree(home, ignore_errors=True)
    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, "
          f"Python {sys.version.split()[0]}; simulator speed {args.speed:g}x, push interval "
          f"{args.push_interval:g} s")  # fmt: skip
    print(f"load average: {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(
        f"PostgreSQL floor on one connection (p50 / p99 ms): one-row INSERT + COMMIT "
        f"{summarise(floor['commit'])}, a read + COMMIT {summarise(floor['read'])}"
    )
    for account, entries, state, cash in ledger_costs:
        print(f"account reads on {account} ({entries} ledger entries), p50 / p99 ms: "
              f"read_account_state {state}, ledger_cash {cash}")  # fmt: skip
    numbers = {name: report(name, probe, summary) for name, (probe, summary) in results.items()}
    live = numbers.get(sessions[0][0], {})
    confirmed, pushed = live.get(CONFIRMED), live.get(PUSHED)
    if confirmed and pushed:
        print(
            "\nlive, arrival → request p50: REST-confirmed "
            f"{statistics.median(confirmed['total']):.2f} ms vs on the push "
            f"{statistics.median(pushed['total']):.2f} ms "
            f"({statistics.median(confirmed['total']) / statistics.median(pushed['total']):.2f}x)"
            f"; p99 {percentile(confirmed['total'], 99):.2f} vs "
            f"{percentile(pushed['total'], 99):.2f} ms"
        )


if __name__ == "__main__":
    main()
