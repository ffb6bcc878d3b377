"""What a live engine records during a rollout, written directly for rollout tests."""

from __future__ import annotations

import uuid

import polars as pl

from goldrl_dagster.lib.runtime import Runtime
from goldrl_dagster.lib.storage.rollout_store import record_shadow_decision


def _session(conn) -> str:
    session = uuid.uuid4().hex
    conn.execute(
        "INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
        "VALUES (%s, 'paper', 'XAUT-USDT', 'ws://test')",
        (session,),
    )
    return session


def write_live_decisions(
    runtime: Runtime, table: pl.DataFrame, *, traded: str, shadow: str, rollout_id: int | None,
    bars: int, signal: dict[str, str], skip: int = 0,
) -> None:  # fmt: skip
    """Write what an engine records: the traded model's decisions and the shadow model's.

    The bars are the held-out part of the planted market (after ``skip`` of them).
    """
    rows = table.slice(table.height // 3 + skip, bars)
    times = rows["open_time"].to_list()
    closes = rows["close"].to_list()
    signals = {name: rows[column].to_list() for name, column in signal.items()}
    equity = 100_000.0
    with runtime.db.connect() as conn:
        session = _session(conn)
        for i, (when, price) in enumerate(zip(times, closes, strict=True)):
            target = int(signals[traded][i])
            conn.execute(
                "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id, "
                "model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action, "
                "target_position, price, position_after, cash_after, equity_after, outcome, "
                "rollout_id) VALUES (%s, 'XAUT-USDT', %s, %s, 's', 'd', 'f', 'o', %s, %s, %s, "
                "%s, %s, %s, %s, %s)",
                (session, when, traded, target + 1, target, price, target, equity, equity,
                 "filled BUY 1" if i % 10 == 0 else "no order", rollout_id),
            )  # fmt: skip
            shadow_target = int(signals[shadow][i])
            record_shadow_decision(
                conn, session_id=session, instrument="XAUT-USDT", bar_open_time=when,
                model_id=shadow, model_sha256="s", rollout_id=rollout_id,
                observation_sha256="o", action=shadow_target + 1, target_position=shadow_target,
                price=price,
            )  # fmt: skip
        conn.commit()
