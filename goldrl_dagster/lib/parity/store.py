"""Parity reports in PostgreSQL (migration 0021): a summary row and one row per bar.

Writing a day's reports replaces that market-day's reports in one transaction (the bars go
with them, ``ON DELETE CASCADE``), so re-materializing a day is idempotent.
"""

from __future__ import annotations

import json
from dataclasses import astuple
from datetime import date

import polars as pl

from goldrl_dagster.lib.parity.compare import BarComparison
from goldrl_dagster.lib.parity.replay import ParityReport
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.server import Database

_SUMMARY_COLUMNS = (
    "window_bars", "live_decisions", "compared_bars", "agreeing_bars", "identical_bars",
    "identical_agreeing_bars", "agreement_pct", "identical_agreement_pct",
    "feature_mismatch_bars", "missed_bars", "live_fills", "backtest_fills", "mean_fill_gap_bps",
    "max_abs_fill_gap_bps", "live_pnl", "backtest_pnl", "pnl_gap", "ledger_residual",
)  # fmt: skip
_BAR_COLUMNS = tuple(
    name for name in BarComparison.__dataclass_fields__ if name not in ("index", "status")
)


def write_parity_reports(
    db: Database, instrument: str, interval: str, day: date, reports: list[ParityReport]
) -> list[int]:
    """Replace a market-day's parity reports with these.

    Args:
        db: The database.
        instrument: Exchange symbol.
        interval: Bar interval.
        day: The UTC day.
        reports: The day's reports (may be empty: the day's rows are removed).

    Returns:
        The new ``report_id`` of each report, in order.
    """
    ids: list[int] = []
    with db.connect() as conn:
        conn.execute(
            "DELETE FROM parity_reports WHERE instrument = %s AND interval = %s AND day = %s",
            (instrument, interval, day),
        )
        for report in reports:
            summary = report.comparison.summary
            bars = report.comparison.bars
            columns = (
                "instrument", "interval", "day", "session_id", "model_id", "mode",
                "first_bar_open_time", "last_bar_open_time", *_SUMMARY_COLUMNS, "attribution",
                "order_quantity", "cost_model_fingerprint", "feature_fingerprint", "status",
            )  # fmt: skip
            values = (
                instrument, interval, day, report.session_id, report.model_id, report.mode,
                report.open_times[0], report.open_times[-1],
                *(summary[c] for c in _SUMMARY_COLUMNS),
                json.dumps(report.comparison.attribution), report.order_quantity,
                report.cost_model_fingerprint, report.feature_fingerprint, report.status,
            )  # fmt: skip
            placeholders = ", ".join(["%s"] * len(columns))
            [report_id] = conn.execute(
                f"INSERT INTO parity_reports ({', '.join(columns)}) VALUES ({placeholders}) "
                "RETURNING report_id",
                values,
            ).fetchone()
            with conn.cursor().copy(
                f"COPY parity_report_bars (report_id, bar_open_time, live_status, "
                f"{', '.join(_BAR_COLUMNS)}) FROM STDIN"
            ) as copy:
                for when, bar in zip(report.open_times, bars, strict=True):
                    row = dict(zip(BarComparison.__dataclass_fields__, astuple(bar), strict=True))
                    copy.write_row((report_id, when, bar.status, *(row[c] for c in _BAR_COLUMNS)))
            ids.append(int(report_id))
        conn.commit()
    return ids


def read_parity_reports(db: Database, instrument: str, interval: str, day: date) -> pl.DataFrame:
    """A market-day's report summaries (one row per session and model)."""
    return read_frame(
        db,
        "SELECT * FROM parity_reports WHERE instrument = $1 AND interval = $2 AND day = $3 "
        "ORDER BY session_id, model_id",
        [instrument, interval, day],
    )


def read_parity_bars(db: Database, report_id: int) -> pl.DataFrame:
    """A report's bars, oldest first."""
    return read_frame(
        db,
        "SELECT * FROM parity_report_bars WHERE report_id = $1 ORDER BY bar_open_time",
        [report_id],
    )
