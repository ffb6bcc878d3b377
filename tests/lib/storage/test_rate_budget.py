"""The PostgreSQL rate budget: one sliding window shared by threads and processes."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from goldrl_dagster.lib.storage.rate_budget import PostgresRateBudget
from goldrl_dagster.lib.storage.server import Database

LIMIT, WINDOW = 5, 0.5


def max_in_window(stamps: list[float], window: float) -> int:
    """Most grants inside any half-open window of ``window`` seconds."""
    stamps = sorted(stamps)
    best, lo = 0, 0
    for hi, t in enumerate(stamps):
        while stamps[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def grants(db: Database, group: str) -> list[float]:
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT granted_at FROM rate_budget_grants WHERE group_name = %s", (group,)
        ).fetchall()
    return [r[0] for r in rows]


def test_grants_up_to_the_limit_then_waits(clean_database):
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    budget = PostgresRateBudget(clean_database, {"market": (LIMIT, WINDOW)}, slack=0.0, sleep=sleep)
    for _ in range(LIMIT):
        budget.acquire("market")
    assert sleeps == []  # the first LIMIT requests fit at once
    first = min(grants(clean_database, "market"))
    budget.acquire("market")
    assert len(sleeps) >= 1 and 0 < sleeps[0] <= WINDOW
    stamps = grants(clean_database, "market")
    # The sixth waited for the first grant to leave the window, which pruned it (and any
    # other that expired while it slept).
    assert first not in stamps and 1 <= len(stamps) <= LIMIT
    assert max(stamps) - first >= WINDOW
    budget.close()


def test_weights_count_and_bad_requests_are_refused(clean_database):
    budget = PostgresRateBudget(clean_database, {"market": (LIMIT, WINDOW)}, slack=0.0)
    budget.acquire("market", weight=LIMIT)
    with pytest.raises(ValueError, match="unknown rate-limit group 'orders'"):
        budget.acquire("orders")
    with pytest.raises(ValueError, match="weight must be an integer in 1 … 5"):
        budget.acquire("market", weight=LIMIT + 1)
    with pytest.raises(ValueError, match="weight"):
        budget.acquire("market", weight=0)
    budget.close()


def test_threads_share_one_window(clean_database):
    budget = PostgresRateBudget(clean_database, {"market": (LIMIT, WINDOW)}, slack=0.1)
    per_thread, threads = 4, 4
    returned: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(per_thread):
            budget.acquire("market")
            with lock:
                returned.append(time.monotonic())

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    budget.close()
    assert len(returned) == per_thread * threads
    assert max_in_window(returned, WINDOW) <= LIMIT
    # 16 grants at 5 per window need at least three full windows after the first grant.
    assert max(returned) - min(returned) >= 3 * WINDOW


def _worker(db: Database, n: int, out: multiprocessing.Queue) -> None:
    budget = PostgresRateBudget(db, {"market": (LIMIT, WINDOW)}, slack=0.1)
    stamps = []
    for _ in range(n):
        budget.acquire("market")
        stamps.append(time.time())
    budget.close()
    out.put(stamps)


def test_processes_share_one_window(clean_database):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(clean_database, 6, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    stamps = [t for _ in procs for t in out.get(timeout=60)]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert len(stamps) == 12
    assert max_in_window(stamps, WINDOW) <= LIMIT
    assert max_in_window(grants(clean_database, "market"), WINDOW) <= LIMIT


def test_expired_grants_are_pruned(clean_database):
    budget = PostgresRateBudget(clean_database, {"market": (LIMIT, 0.2)}, slack=0.0)
    for _ in range(LIMIT):
        budget.acquire("market")
    time.sleep(0.25)
    budget.acquire("market")  # no wait needed, and the old grants are gone
    assert len(grants(clean_database, "market")) == 1
    budget.close()
