"""The operator's UI, used as a person would: ``goldrl ui`` in a real browser (issue 12).

``goldrl ui`` (webserver and daemon) runs as a subprocess on the test's GOLDRL_HOME and
database, next to the local BingX simulator and a paper engine session trading a registered
champion on it. Headless Chromium (the system's, driven by Playwright) opens the lineage of the
models' analytics mart and finds the market → features → datasets → models → analytics chain,
lists the candles asset's checks, then launches ``ops_halt`` from the Launchpad with typed YAML
and reads the engine's acknowledgement on the run page. The database must agree: the command
was applied by the engine's session and the audit log holds its ``control.halt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from engine_sessions import paper_account, query, running_session
from live_engine_support import SYMBOL, promote_champion, register_candidate_model

from goldrl_dagster.instance import DAGSTER_SCHEMA
from goldrl_dagster.lib.runtime import open_runtime
from goldrl_dagster.lib.storage.server import Database
from live_engine.service import run_live_engine
from live_engine.settings import LiveSettings

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

MODEL = "ppo-browser-ui"
ACTOR = "browser-operator"
REASON = "halt drill from the Launchpad"
UI_READY_SECONDS = 240.0
RUN_SECONDS = 180.0  # queued by the daemon, a run worker loading the code location, the answer

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UiServer:
    """``goldrl ui`` as a subprocess in its own session, logging to a file."""

    def __init__(self, port: int, log_path: Path, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "goldrl_dagster.cli", "ui", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def _location(self) -> dict[str, Any] | None:
        try:
            reply = httpx.post(f"{self.url}/graphql", json={"query": WORKSPACE_QUERY}, timeout=5)
        except httpx.TransportError:
            return None
        if reply.status_code != 200:
            return None
        entries = reply.json()["data"]["workspaceOrError"].get("locationEntries") or []
        return next((e for e in entries if e["name"] == "goldrl"), None)

    def wait_ready(self, timeout: float = UI_READY_SECONDS) -> None:
        """Until the webserver answers GraphQL with the ``goldrl`` code location loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"goldrl ui exited:\n{self.log_tail()}"
            entry = self._location()
            if entry is not None and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"]
                assert loaded["__typename"] == "RepositoryLocation", loaded
                return
            time.sleep(1.0)
        raise AssertionError(f"the goldrl code location never loaded:\n{self.log_tail()}")

    def stop(self) -> int:
        """SIGTERM (``goldrl ui`` stops webserver, daemon and their children); kill if stuck."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


class EngineThread:
    """A paper live-engine session in a background thread with its own asyncio loop."""

    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paper-engine", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await run_live_engine(self.settings, stop=self._stop, install_signals=False)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by stop() and by the test's waits
            self.error = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Set the session's stop event and wait for the session to end."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop may have just closed
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the paper engine did not stop within 60s"


@pytest.fixture
def ui_server(database: Database, simulator, tmp_path: Path) -> Iterator[UiServer]:
    """``goldrl ui`` on a free port with the test's GOLDRL_HOME and database (not yet ready)."""
    # The `database` fixture exported GOLDRL_HOME (its embedded server is up) or the external
    # GOLDRL_DATABASE_URL/GOLDRL_SCHEMA: the UI, its daemon and their run workers inherit them.
    env = {
        **os.environ,
        "GOLDRL_BINGX_BASE_URL": simulator.base_url,
        "GOLDRL_BINGX_WS_URL": simulator.ws_url,
    }
    server = UiServer(_free_port(), tmp_path / "goldrl-ui.log", env)
    yield server
    code = server.stop()
    assert code == 0, f"goldrl ui exited with {code}:\n{server.log_tail()}"
    assert "goldrl ui: received SIGTERM; stopped dagster-daemon" in server.log_tail()


@pytest.fixture
def paper_engine(database: Database, simulator, tmp_path: Path) -> Iterator[EngineThread]:
    """A registered, promoted champion and a paper session trading it on the simulator."""
    register_candidate_model(simulator.base_url, MODEL, tmp_path)
    promote_champion(MODEL)
    engine = EngineThread(
        LiveSettings(
            instrument=SYMBOL,
            interval="1m",
            rest_url=simulator.base_url,
            ws_url=simulator.ws_url,
            duration_seconds=480.0,  # a safety net: the fixture stops it
            paper_account=paper_account("browser-ui"),
            heartbeat_seconds=1.0,
            control_poll_seconds=2.0,
            ood_guard="off",
        )
    )
    engine.start()
    yield engine
    engine.stop()
    if engine.error is not None:
        raise engine.error


def _session_id(engine: EngineThread, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert engine.alive, f"the paper engine stopped: {engine.error!r}"
        session_id = running_session(engine.settings.paper_account)
        if session_id:
            return session_id
        time.sleep(0.5)
    raise AssertionError("the paper engine never opened its session")


def _dismiss_community_dialog(page) -> None:
    """Dagster's one-time "Join the Dagster community" dialog: skipped whenever it shows."""
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community", exact=True),
        lambda _: page.get_by_role("button", name="Skip").click(),
    )


def _link(page, text: str):
    """The first link whose visible text is exactly ``text`` (icons add to accessible names)."""
    return page.get_by_role("link").filter(has_text=re.compile(f"^{re.escape(text)}$")).first


def _graph_node(page, name: str):
    """An asset node of the lineage graph: each is drawn in its own ``foreignObject`` of the
    graph's SVG, at its layout position (``x``) whatever the zoom."""
    return page.locator("svg foreignObject").filter(has=page.get_by_text(name, exact=True))


def _check_lineage(page, base_url: str) -> None:
    from playwright.sync_api import expect

    # The global lineage: one box per asset group.
    page.goto(base_url)
    _link(page, "Lineage").click()  # the main navigation
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for group in ("market_data", "features", "datasets", "models", "analytics", "monitoring"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()

    # The analytics mart of the model registry, its whole upstream lineage.
    page.goto(f"{base_url}/assets/analytics/stg_models__models")
    page.get_by_role("tab", name="Lineage").click()
    page.get_by_role("button", name="Upstream").click()
    chain = ["candles", "core_v1_snapshots", "dataset_version", "trained_policy",
             "stg_models__models"]  # fmt: skip
    page.get_by_role("button", name="All", exact=True).click()  # graph depth: everything
    expect(page.locator("input[inputmode=numeric]")).to_have_value("4")
    # The graph zooms in on the focused asset and draws only the nodes on screen: zoom out
    # until both ends of the chain are drawn.
    for _ in range(12):
        if _graph_node(page, chain[0]).count() and _graph_node(page, chain[-1]).count():
            break
        page.get_by_role("button", name="zoom_out").click()
        page.wait_for_timeout(300)
    lefts = []
    for name in chain:
        node = _graph_node(page, name)
        expect(node).to_have_count(1)
        expect(node).to_be_visible()
        lefts.append(float(node.get_attribute("x") or "nan"))
    # Laid out left to right by dependency: each step is downstream of the one before.
    positions = dict(zip(chain, lefts, strict=True))
    assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts), positions
    for group in ("market_data", "features", "datasets", "models", "analytics"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()


def _check_candle_checks(page, base_url: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{base_url}/assets/market/candles")
    page.get_by_role("tab", name="Checks").click()
    expect(page.get_by_text("Checks (4)", exact=True)).to_be_visible()
    for check in ("candles_quality", "candles_no_open_gaps", "candles_return_outliers",
                  "candles_freshness"):  # fmt: skip
        expect(page.get_by_text(check, exact=True).first).to_be_visible()


def _launch_halt(page, base_url: str) -> str:
    """Launch ``ops_halt`` from its Launchpad with typed YAML; returns the run's id."""
    from playwright.sync_api import expect

    page.goto(base_url)
    _link(page, "Jobs").click()  # the main navigation
    page.get_by_role("link").filter(has=page.get_by_text("ops_halt", exact=True)).first.click()
    page.get_by_role("tab", name="Launchpad").click()
    editor = page.locator(".CodeMirror").first
    expect(editor).to_be_visible()
    expect(page.get_by_text("Missing required config entries")).to_be_visible()
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(
        "ops:\n"
        "  halt_command:\n"
        "    config:\n"
        f"      instrument: {SYMBOL}\n"
        "      interval: 1m\n"
        f"      actor: {ACTOR}\n"
        f"      reason: {REASON}\n"
        "      wait_seconds: 30\n"
    )
    expect(page.get_by_text("Missing required config entries")).to_have_count(0)
    launch = page.get_by_role("button", name="Launch Run")
    expect(launch).to_be_enabled()
    launch.click()
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}"), timeout=30_000)
    match = re.search(r"/runs/([0-9a-f-]{36})", page.url)
    assert match is not None, page.url
    return match.group(1)


def test_the_operator_sees_the_lineage_and_halts_the_market_from_the_launchpad(
    ui_server: UiServer, paper_engine: EngineThread, page
) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    session_id = _session_id(paper_engine)
    ui_server.wait_ready()
    print(f"ui ready and engine session {session_id} up after {time.monotonic() - started:.0f}s")
    _dismiss_community_dialog(page)

    _check_lineage(page, ui_server.url)
    _check_candle_checks(page, ui_server.url)

    run_id = _launch_halt(page, ui_server.url)
    # The run page: the op's output metadata and log line carry the engine's answer, from the
    # engine's own session; the run succeeds.
    expect(page.get_by_role("row", name="status applied", exact=True)).to_be_visible(
        timeout=RUN_SECONDS * 1000
    )
    answer = re.compile(rf"engine {re.escape(session_id)}: trading HALTED")
    expect(page.get_by_text(answer).first).to_be_visible()
    expect(page.get_by_text("RUN_SUCCESS", exact=True)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    print(f"halt acknowledged on the run page after {time.monotonic() - started:.0f}s")

    # The database agrees: the engine's session applied the command, and audited it.
    rows = query(
        "SELECT command_id, status, claimed_by, result ->> 'trading_state' FROM control_commands "
        "WHERE action = 'halt' AND instrument = %s AND actor = %s AND reason = %s",
        SYMBOL, ACTOR, REASON,
    )  # fmt: skip
    assert len(rows) == 1, rows
    command_id, status, claimed_by, trading_state = rows[0]
    assert (status, claimed_by, trading_state) == ("applied", session_id, "HALTED")
    audit = query(
        "SELECT action, actor FROM audit_log WHERE (after ->> 'command_id')::bigint = %s "
        "ORDER BY entry_id",
        command_id,
    )
    assert [action for action, _ in audit] == ["control.issued", "control.halt"], audit
    # And Dagster recorded the run as the Launchpad's, succeeded.
    dagster_schema = f"{open_runtime().db.schema}_{DAGSTER_SCHEMA}"
    runs = query(f'SELECT status FROM "{dagster_schema}".runs WHERE run_id = %s', run_id)
    assert runs == [("SUCCESS",)], runs
