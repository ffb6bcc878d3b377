"""Watching live-engine sessions from a test: accounts, the running session, rows, waiting.

Call these after the ``settings`` and ``database`` fixtures have pointed goldrl at the test
database (they open the runtime from the environment).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from goldrl_dagster.lib.runtime import open_runtime


def paper_account(name: str) -> str:
    """A paper account no other test (or earlier run of this one) has used."""
    return f"paper:{name}-{time.time_ns()}"


def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one statement on the test database."""
    with open_runtime().db.connect() as conn:
        return conn.execute(sql, params).fetchall()


def running_session(account: str) -> str | None:
    """The id of the session trading ``account`` now (None: none running)."""
    rows = query(
        "SELECT session_id FROM live_sessions WHERE account_id = %s AND stopped_at IS NULL",
        account,
    )
    return rows[0][0] if rows else None


async def until(check: Callable[[], Any], what: str, timeout: float = 40.0) -> Any:
    """Poll ``check`` (in a thread) until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await asyncio.to_thread(check)
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
