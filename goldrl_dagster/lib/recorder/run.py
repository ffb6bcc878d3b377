"""Run the recorder as a service (``goldrl record``): settings, signals, the final summary."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from goldrl_dagster.lib.config import Settings
from goldrl_dagster.lib.recorder.service import Recorder, RecorderConfig
from goldrl_dagster.lib.runtime import open_runtime


def recorder_config(settings: Settings, **options: Any) -> RecorderConfig:
    """The recorder configuration from goldrl's settings (BingX URLs, home) and CLI options.

    The spool is ``GOLDRL_HOME/recorder-spool`` unless ``spool_dir`` is given.

    Args:
        settings: goldrl settings (``GOLDRL_BINGX_BASE_URL`` / ``GOLDRL_BINGX_WS_URL``,
            ``GOLDRL_HOME``).
        **options: :class:`RecorderConfig` fields to set (``instruments``, ``depth_channel``…);
            ``None`` values are left at their defaults.

    Raises:
        ValueError: If an option is invalid.
    """
    given = {k: v for k, v in options.items() if v is not None}
    given.setdefault("spool_dir", settings.home / "recorder-spool")
    return RecorderConfig(ws_url=settings.bingx_ws_url, rest_url=settings.bingx_base_url, **given)


async def run_recorder(
    config: RecorderConfig,
    settings: Settings | None = None,
    *,
    duration_seconds: float = 0.0,
    install_signals: bool = True,
) -> dict[str, Any]:
    """Record until SIGINT/SIGTERM (or ``duration_seconds``), then flush and mark stopped.

    Args:
        config: What to record.
        settings: goldrl settings (database); read from the environment when omitted.
        duration_seconds: Stop after this long; 0 runs until signalled.
        install_signals: Stop on SIGINT/SIGTERM.

    Returns:
        The recorder's final counters.
    """
    runtime = await asyncio.to_thread(open_runtime, settings)
    recorder = Recorder(runtime.db, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        return await recorder.run(stop, duration_seconds)
    finally:
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


def summary_line(counters: dict[str, Any]) -> str:
    """One line for the operator: rows stored (of offered) per table, gaps, faults."""
    written, offered = counters.get("written", {}), counters.get("offered", {})
    tables = ", ".join(
        f"{t.removeprefix('stream_')} {written.get(t, 0)}/{offered.get(t, 0)}"
        for t in sorted(offered)
        if offered.get(t)
    )
    line = (
        f"stored/offered rows: {tables or 'none'}; reconnects {counters.get('reconnects', 0)}, "
        f"malformed pushes {counters.get('malformed_pushes', 0)}, "
        f"task failures {counters.get('task_failures', 0)}"
    )
    waiting = counters.get("spooled_rows", 0) - counters.get("replayed_rows", 0)
    if waiting > 0:
        line += f"; {waiting} rows wait in the spool for the database (replayed at next start)"
    return line
