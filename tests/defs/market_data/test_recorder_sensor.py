"""The recorder's heartbeat sensor and the recorded streams' checks, on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from goldrl_dagster.defs.market_data.recorder import (
    BOOK_CHECK,
    CHECK_WINDOW,
    HEARTBEAT_CHECK,
    SEQUENCE_CHECK,
    recorded_books_sane,
    recorded_incr_depth_sequence,
    recorded_streams,
    recorded_streams_checks_job,
    recorded_streams_fresh,
    recorder_heartbeat_fresh,
    recorder_heartbeat_sensor,
)
from goldrl_dagster.defs.monitoring.alerts import slo_alert_sensor
from goldrl_dagster.defs.resources import GoldrlStorage
from goldrl_dagster.lib.bingx.models import _make_trade
from goldrl_dagster.lib.recorder import rows
from goldrl_dagster.lib.storage.server import Database
from goldrl_dagster.lib.storage.stream_store import RecorderBeat, StreamStore, upsert_recorder_beat

DEFS = dg.Definitions(
    assets=[recorded_streams],
    asset_checks=[
        recorder_heartbeat_fresh, recorded_streams_fresh, recorded_incr_depth_sequence,
        recorded_books_sane,
    ],
    jobs=[recorded_streams_checks_job],
    sensors=[recorder_heartbeat_sensor],
    resources={"storage": GoldrlStorage()},
)  # fmt: skip


def _beat(db: Database, recorder_id: str, age: timedelta) -> None:
    beat = RecorderBeat(recorder_id, ("XAUT-USDT",), datetime.now(UTC), 1.0, {})
    upsert_recorder_beat(db, beat)
    with db.connect() as conn:
        conn.execute(
            "UPDATE recorder_heartbeats SET beat_at = now() - %s WHERE recorder_id = %s",
            (age, recorder_id),
        )
        conn.commit()


def _sensor(instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance, resources={"storage": GoldrlStorage()}, definitions=DEFS
    )
    return recorder_heartbeat_sensor(context)


def test_a_stale_heartbeat_runs_the_checks_and_the_failed_check_is_alerted(
    clean_database: Database, tmp_path
) -> None:
    db = clean_database
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert isinstance(_sensor(instance), dg.SkipReason)  # no recorder: nothing to do
        _beat(db, "rec-live", timedelta(seconds=1))
        (periodic,) = _sensor(instance).run_requests  # type: ignore[union-attr]
        assert periodic.run_key.startswith("recorder-periodic|")
        _beat(db, "rec-live", timedelta(minutes=10))
        (stale,) = _sensor(instance).run_requests  # type: ignore[union-attr]
        assert stale.run_key.startswith("recorder-stale|rec-live|")
        assert "last beat 600s ago" in stale.tags["goldrl/recorder_finding"]
        # The same stale beat keeps its run key: one run per episode.
        again = _sensor(instance).run_requests[0]  # type: ignore[union-attr]
        assert again.run_key == stale.run_key
        result = DEFS.resolve_job_def("recorded_streams_checks").execute_in_process(
            instance=instance, raise_on_error=False
        )
        evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert evaluations[HEARTBEAT_CHECK] is False
        assert evaluations[BOOK_CHECK] is True and evaluations[SEQUENCE_CHECK] is True
        alerts = slo_alert_sensor(
            dg.build_sensor_context(
                instance=instance, resources={"storage": GoldrlStorage()}, definitions=DEFS
            )
        )
        assert "1 alert(s) firing" in str(alerts.skip_message)
        with db.connect() as conn:
            (message,) = conn.execute("SELECT message FROM alert_state WHERE firing").fetchone()  # type: ignore[misc]
        assert HEARTBEAT_CHECK in message and "rec-live" in message


def test_sequence_holes_need_a_recorded_gap_and_books_must_not_cross(
    clean_database: Database,
) -> None:
    db = clean_database
    t0 = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    bids, asks = [[100.0, 1.0]], [[100.5, 1.0]]
    book = [
        ("XAUT-USDT", "incrDepth", rows.utc(t0 + i), uid, 100.0, 100.5, bids, asks)
        for i, uid in enumerate((10, 11, 13, 14))  # 12 is missing
    ]
    after_hole = f"XAUT-USDT@incrDepth {rows.utc(t0 + 2).isoformat(timespec='milliseconds')}"
    with StreamStore(db) as store:
        store.write({"stream_book": book})
        storage = GoldrlStorage()
        hole = recorded_incr_depth_sequence(storage=storage)
        assert not hole.passed
        assert hole.description == f"unexplained_hole: 1 row(s), e.g. {after_hole}"
        assert hole.metadata["suite"].value == "recorded_incr_depth_sequence"
        # The recorder recorded the skip: the hole is explained.
        skip = rows.gap_row("XAUT-USDT", "incrDepth", t0 + 2, t0 + 2, "sequence_skip")
        store.write({"stream_gaps": [skip]})
        assert recorded_incr_depth_sequence(storage=storage).passed
        # A book going back is never explained.
        store.write({"stream_book": [("XAUT-USDT", "incrDepth", rows.utc(t0 + 9), 5, 100.0,
                                      100.5, bids, asks)]})  # fmt: skip
        back = recorded_incr_depth_sequence(storage=storage)
        assert not back.passed and str(back.description).startswith("id_step: 1 row(s)")
        assert recorded_books_sane(storage=storage).passed
        crossed = ("PAXG-USDT", "depth20@100ms", rows.utc(t0), None, 101.0, 100.5, bids, asks)
        store.write({"stream_book": [crossed]})
        sane = recorded_books_sane(storage=storage)
        assert not sane.passed and "spread: 1 row(s), e.g. PAXG-USDT@depth20@100ms" in str(
            sane.description
        )
        ticker = ("XAUT-USDT", rows.utc(t0 + 5), 7, 100.5, 1.0, 100.5, 1.0)  # locked
        store.write({"stream_book_tickers": [ticker]})
        assert "XAUT-USDT@bookTicker" in str(recorded_books_sane(storage=storage).description)


def test_the_window_judges_recent_books_against_the_book_before_it(
    clean_database: Database,
) -> None:
    """Books older than the window are not judged, but the first book inside it is compared with
    the newest one before it: a hole at the window's edge is not lost."""
    db = clean_database
    old = int((datetime.now(UTC) - CHECK_WINDOW - timedelta(minutes=5)).timestamp() * 1000)
    recent = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    side = [[100.0, 1.0]]
    with StreamStore(db) as store:
        store.write({"stream_book": [
            ("XAUT-USDT", "depth20@100ms", rows.utc(old), None, 101.0, 100.5, side, side),
            ("XAUT-USDT", "incrDepth", rows.utc(old), 40, 100.0, 100.5, side, side),
            ("XAUT-USDT", "incrDepth", rows.utc(recent), 42, 100.0, 100.5, side, side),
        ]})  # fmt: skip
    storage = GoldrlStorage()
    assert recorded_books_sane(storage=storage).passed  # the crossed book is out of the window
    edge = recorded_incr_depth_sequence(storage=storage)
    assert not edge.passed and "unexplained_hole: 1 row(s)" in str(edge.description)


def test_a_stream_without_rows_for_five_minutes_is_stale(clean_database: Database) -> None:
    db = clean_database
    started = datetime.now(UTC) - timedelta(minutes=10)
    upsert_recorder_beat(db, RecorderBeat("rec-quiet", ("XAUT-USDT",), started, 1.0, {}))
    storage = GoldrlStorage()
    quiet = recorded_streams_fresh(storage=storage)
    assert not quiet.passed and quiet.severity == dg.AssetCheckSeverity.WARN
    # trade, book, ticker, markPrice, bookTicker: none received since the start, 10 min ago
    assert str(quiet.description).startswith("age_seconds: 5 row(s), e.g. XAUT-USDT@trade, ")
    [failure] = quiet.metadata["failures"].value
    assert failure["unexpected_count"] == 5
    t0 = int(datetime.now(UTC).timestamp() * 1000)
    at = rows.utc(t0)
    fresh = {
        "stream_trades": [rows.trade_row(_make_trade("XAUT-USDT", t0, 3100.0, 0.5, True), 1)],
        "stream_book": [("XAUT-USDT", "incrDepth", at, 1, 100.0, 100.5, [[100.0, 1.0]],
                         [[100.5, 1.0]])],
        "stream_tickers": [("XAUT-USDT", at, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, None, None)],
        "stream_mark_prices": [("XAUT-USDT", at, 1.0)],
        "stream_book_tickers": [("XAUT-USDT", at, None, 1.0, 1.0, 2.0, 1.0)],
    }  # fmt: skip
    with StreamStore(db) as store:
        store.write(fresh)
    assert recorded_streams_fresh(storage=storage).passed
