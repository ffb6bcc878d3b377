"""Browser fixtures: the system Chromium (installed from apt when missing), a Playwright page.

Playwright drives the Debian package's Chromium (``executable_path``): no browser is ever
downloaded from the internet. When Chromium is missing and the tests run as root, it is
installed with ``apt-get``; otherwise the browser tests are skipped with the reason.
On a failing test the page's screenshot and HTML are saved into the test's ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The system Chromium's executable, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Path of the system Chromium, installed with apt-get (as root) when it is missing."""
    found = find_chromium()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip(
            "Chromium is not installed and installing it needs root: "
            "run `apt-get update && apt-get install -y chromium` as root"
        )
    if shutil.which("apt-get") is None:
        pytest.skip("Chromium is not installed and there is no apt-get to install it with")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    found = find_chromium()
    if found is None:
        pytest.fail("apt-get installed chromium but no chromium executable is on PATH")
    return found


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(chromium_executable: str, request: pytest.FixtureRequest, tmp_path: Path):
    """A fresh page in headless Chromium; screenshot and HTML into ``tmp_path`` on failure."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_executable)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            report = getattr(request.node, "report_call", None)
            if report is None or report.failed:
                shot = tmp_path / "failure.png"
                try:
                    page.screenshot(path=str(shot), full_page=True)
                    (tmp_path / "failure.html").write_text(page.content())
                    print(f"browser: page at failure {page.url}: {shot}")
                except Exception as exc:  # the page may be gone; the test's error matters
                    print(f"browser: no screenshot ({exc})")
            context.close()
            browser.close()
