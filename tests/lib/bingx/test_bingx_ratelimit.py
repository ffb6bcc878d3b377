"""Pacing: the local budget, the simulator's per-IP limits and bans, and the client between."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from goldrl_dagster.lib.bingx.errors import BannedError, BingXError, RateLimitedError
from goldrl_dagster.lib.bingx.ratelimit import LocalRateBudget, wait_seconds
from goldrl_dagster.lib.bingx.rest import BingXRestClient
from goldrl_dagster.lib.bingx.simulator.limits import SimRateLimits

TIME_PATH = "/openApi/swap/v2/server/time"


class FakeClock:
    """Time that only moves when the budget sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_wait_seconds_frees_the_oldest_grants_first():
    grants = [(0.0, 2), (1.0, 1), (2.0, 1)]
    assert wait_seconds(grants, limit=5, window=10.0, weight=1, now=3.0) == 0.0
    assert wait_seconds(grants, limit=4, window=10.0, weight=1, now=3.0) == 7.0  # (0.0) leaves
    assert wait_seconds(grants, limit=4, window=10.0, weight=3, now=3.0) == 8.0  # and (1.0)
    assert wait_seconds(grants, limit=4, window=10.0, weight=1, now=10.5) == 0.0  # expired


def test_local_budget_paces_at_the_limit():
    clock = FakeClock()
    budget = LocalRateBudget({"market": (3, 10.0)}, slack=0.0, clock=clock, sleep=clock.sleep)
    stamps = []
    for _ in range(7):
        budget.acquire("market")
        stamps.append(clock.now)
    # Three at once, then each waits for the grant three places earlier to leave the window.
    assert stamps == [1000.0, 1000.0, 1000.0, 1010.0, 1010.0, 1010.0, 1020.0]
    with pytest.raises(ValueError, match="unknown rate-limit group"):
        budget.acquire("orders")
    with pytest.raises(ValueError, match="weight"):
        budget.acquire("market", 4)
    with pytest.raises(ValueError, match="requests >= 1"):
        LocalRateBudget({"market": (0, 1.0)})


def test_local_budget_slack_stretches_the_window():
    clock = FakeClock()
    budget = LocalRateBudget({"market": (1, 10.0)}, slack=0.05, clock=clock, sleep=clock.sleep)
    budget.acquire("market")
    budget.acquire("market")
    assert clock.now == pytest.approx(1010.5)


def test_local_budget_is_thread_safe():
    budget = LocalRateBudget({"market": (4, 0.3)}, slack=0.1)
    returned: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(3):
            budget.acquire("market")
            with lock:
                returned.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    returned.sort()
    assert len(returned) == 12
    assert all(returned[i + 4] - returned[i] >= 0.3 for i in range(len(returned) - 4))


def test_simulator_refuses_over_the_limit_then_bans(start_sim):
    server = start_sim(
        rate_limits=SimRateLimits({"market": (5, 1.0)}, ban_after=3, ban_window=5.0, ban_seconds=60)
    )
    url = f"{server.base_url}{TIME_PATH}"
    statuses = [httpx.get(url).status_code for _ in range(9)]
    assert statuses == [200] * 5 + [429] * 3 + [418]
    assert server.rate_limit_stats() == {"granted": 5, "refused": 3, "banned": 1}
    client = BingXRestClient(server.base_url, sleep=lambda _: None)
    with client, pytest.raises(BannedError):
        client.server_time_ms()


def test_simulator_can_answer_code_100410(start_sim):
    server = start_sim(rate_limits=SimRateLimits({"market": (1, 5.0)}, reply="code"))
    url = f"{server.base_url}{TIME_PATH}"
    httpx.get(url)
    refused = httpx.get(url)
    assert refused.status_code == 200 and refused.json()["code"] == 100410


def test_client_pacing_at_the_limit_gets_no_429(start_sim):
    limit, window = 20, 1.0
    server = start_sim(rate_limits=SimRateLimits({"market": (limit, window)}, ban_after=1))
    budget = LocalRateBudget({"market": (limit, window)})
    with BingXRestClient(server.base_url, rate_budget=budget, max_retries=0) as client:
        for _ in range(3 * limit):
            client.server_time_ms()
        assert client.rate_limited == 0
    assert server.rate_limit_stats() == {"granted": 3 * limit, "refused": 0, "banned": 0}


def test_unpaced_client_is_refused_and_backs_off(start_sim):
    limit = 10
    server = start_sim(rate_limits=SimRateLimits({"market": (limit, 1.0)}, ban_after=1000))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    with BingXRestClient(
        server.base_url, sleep=sleep, rate_limit_backoff=(0.3, 1.0), max_retries=8
    ) as client:
        for _ in range(limit + 3):
            client.server_time_ms()  # every call succeeds in the end
        assert client.rate_limited >= 1 and server.rate_limit_stats()["refused"] >= 1
    assert sleeps and min(sleeps) >= 0.15  # rate-limit backoff never retries at once


def test_injected_rate_limit_burst_is_retried(sim):
    sleeps: list[float] = []
    with BingXRestClient(sim.base_url, sleep=sleeps.append) as client:
        sim.inject_rate_limit_burst(4)  # 429, 100410, 429, 100410
        assert client.server_time_ms() > 0
        assert client.rate_limited == 4 and len(sleeps) == 4
        sim.inject_rate_limit_burst(3, reply="code")
        client.max_retries = 2
        with pytest.raises(RateLimitedError) as info:
            client.server_time_ms()
        assert info.value.code == 100410


def test_injected_timeouts_are_retried_then_fail(sim):
    sleeps: list[float] = []
    with BingXRestClient(sim.base_url, timeout=0.2, sleep=sleeps.append) as client:
        sim.inject_timeouts(2, 1.0)
        assert client.server_time_ms() > 0
        assert len(sleeps) == 2
        sim.inject_timeouts(2, 1.0)
        client.max_retries = 1
        with pytest.raises(BingXError, match="Timeout"):
            client.server_time_ms()


def test_injected_5xx_exhaust_retries_with_a_clear_error(sim):
    with BingXRestClient(sim.base_url, sleep=lambda _: None, max_retries=2) as client:
        sim.inject_rest_faults(502, 503, 500)
        with pytest.raises(BingXError, match="HTTP 500") as info:
            client.klines("XAUT-USDT", "1m", limit=1)
        assert info.value.code == 500
