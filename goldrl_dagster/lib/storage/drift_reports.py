"""Daily feature-drift reports and the governance requests a drift alert raises (migration 0016).

``feature_drift_reports`` holds one row per feature of a market's UTC day judged against one
model's training reference; writing a day's report replaces that (market, day, model)'s rows in
one transaction, so re-running a day is idempotent. ``governance_requests`` is append-only: a
request is written once per (requested_by, kind, instrument, interval, model_id, day) and only
its ``handled_at`` / ``outcome`` may later be filled, once, by whatever handles it (nothing does
yet: the retrain loop and the operator plane will).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import polars as pl

from goldrl_dagster.lib.drift.feature_drift import DriftReport, FeatureDrift
from goldrl_dagster.lib.storage.bulk import read_frame
from goldrl_dagster.lib.storage.server import Database

GovernanceKind = Literal["retrain", "rollback", "halt"]
GOVERNANCE_KINDS: tuple[str, ...] = ("retrain", "rollback", "halt")

_REPORT_COLUMNS = (
    "instrument",
    "interval",
    "day",
    "model_id",
    "fingerprint",
    "feature",
    "psi",
    "ks_statistic",
    "ks_pvalue",
    "count",
    "missing_share",
    "ood_share",
    "status",
    "reasons",
    "reference_first_day",
    "reference_last_day",
)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _feature_values(f: FeatureDrift) -> tuple[Any, ...]:
    """The per-feature columns, ``feature`` … ``reasons``, of one report row."""
    return (
        f.name,
        _finite_or_none(f.psi),
        _finite_or_none(f.ks_statistic),
        _finite_or_none(f.ks_pvalue),
        f.count,
        f.missing_share,
        f.ood_share,
        f.status,
        "; ".join(f.reasons),
    )


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def write_feature_drift_report(
    db: Database,
    report: DriftReport | None,
    *,
    instrument: str,
    interval: str,
    day: date,
    model_id: str,
    fingerprint: str,
    reference_first_day: date,
    reference_last_day: date,
) -> int:
    """Replace a day's drift rows of one model on one market with ``report``'s features.

    Args:
        db: The database.
        report: The day's report; None (nothing to judge that day) only deletes the old rows.
        instrument: Instrument of the judged features.
        interval: Bar interval.
        day: The UTC day judged.
        model_id: The model whose training reference was used (a registered model).
        fingerprint: Its feature-set fingerprint (a registered feature set).
        reference_first_day: First day of the training reference.
        reference_last_day: Last day of the training reference.

    Returns:
        Rows written.

    Raises:
        ValueError: If a text argument is empty, the reference window is reversed, or the
            report's fingerprint differs from ``fingerprint``.
    """
    for name, value in (
        ("instrument", instrument),
        ("interval", interval),
        ("model_id", model_id),
        ("fingerprint", fingerprint),
    ):
        _text(name, value)
    if reference_last_day < reference_first_day:
        raise ValueError(
            f"reference window {reference_first_day} … {reference_last_day} is reversed"
        )
    if report is not None and report.fingerprint not in (None, fingerprint):
        raise ValueError(f"report is of fingerprint {report.fingerprint}, not {fingerprint}")
    features = report.features if report is not None else ()
    window = (reference_first_day, reference_last_day)
    key = (instrument, interval, day, model_id, fingerprint)
    rows = [(*key, *_feature_values(f), *window) for f in features]
    placeholders = ", ".join(["%s"] * len(_REPORT_COLUMNS))
    with db.connect() as conn:
        conn.execute(
            "DELETE FROM feature_drift_reports WHERE instrument = %s AND interval = %s "
            "AND day = %s AND model_id = %s",
            (instrument, interval, day, model_id),
        )
        if rows:
            with conn.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO feature_drift_reports ({', '.join(_REPORT_COLUMNS)}) "
                    f"VALUES ({placeholders})",
                    rows,
                )
        conn.commit()
    return len(rows)


def read_feature_drift_reports(
    db: Database,
    instrument: str,
    interval: str,
    first_day: date,
    last_day: date,
    *,
    model_id: str | None = None,
) -> pl.DataFrame:
    """Stored drift rows of a market's days ``first_day`` … ``last_day`` (inclusive).

    Returns:
        The table's columns, ordered by day, model and feature.
    """
    query = (
        f"SELECT {', '.join(_REPORT_COLUMNS)}, computed_at FROM feature_drift_reports "
        "WHERE instrument = $1 AND interval = $2 AND day BETWEEN $3 AND $4"
    )
    params: list[Any] = [instrument, interval, first_day, last_day]
    if model_id is not None:
        query += " AND model_id = $5"
        params.append(model_id)
    return read_frame(db, query + " ORDER BY day, model_id, feature", params)


@dataclass(frozen=True)
class GovernanceRequest:
    """A stored governance request (see the module docstring)."""

    request_id: int
    kind: str
    instrument: str
    interval: str
    model_id: str | None
    day: date | None
    reason: str
    details: dict[str, Any]
    requested_by: str
    created_at: datetime
    handled_at: datetime | None
    outcome: str | None


_REQUEST_COLUMNS = (
    "request_id, kind, instrument, interval, model_id, day, reason, details, requested_by, "
    "created_at, handled_at, outcome"
)


def request_governance_action(
    db: Database,
    *,
    kind: GovernanceKind,
    instrument: str,
    interval: str,
    model_id: str | None,
    day: date | None,
    reason: str,
    requested_by: str,
    details: dict[str, Any] | None = None,
) -> tuple[GovernanceRequest, bool]:
    """Record a governance request, at most once per requester, kind, market, model and day.

    Nothing executes the request here: a handler (the retrain loop, the operator plane) reads
    the pending ones and fills ``handled_at`` / ``outcome``.

    Args:
        db: The database.
        kind: ``retrain``, ``rollback`` or ``halt``.
        instrument: The market's instrument.
        interval: The market's interval.
        model_id: The model concerned (the champion the drift was measured against).
        day: The day the request is about; with a day, the same request is written only once.
        reason: Why, in words.
        requested_by: Who asks, e.g. ``feature_drift``.
        details: Machine-readable context (stored as JSON).

    Returns:
        The stored request (the earlier one if it was already recorded) and whether this call
        created it.

    Raises:
        ValueError: If ``kind`` is unknown or a text argument is empty.
    """
    if kind not in GOVERNANCE_KINDS:
        raise ValueError(f"kind must be one of {GOVERNANCE_KINDS}, got {kind!r}")
    for name, value in (
        ("instrument", instrument),
        ("interval", interval),
        ("reason", reason),
        ("requested_by", requested_by),
    ):
        _text(name, value)
    payload = json.dumps(details or {}, sort_keys=True, default=str)
    with db.connect() as conn:
        inserted = conn.execute(
            "INSERT INTO governance_requests (kind, instrument, interval, model_id, day, reason, "
            "details, requested_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (requested_by, kind, instrument, interval, model_id, day) DO NOTHING "
            f"RETURNING {_REQUEST_COLUMNS}",
            (kind, instrument, interval, model_id, day, reason, payload, requested_by),
        ).fetchone()
        row = (
            inserted
            or conn.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM governance_requests WHERE requested_by = %s "
                "AND kind = %s AND instrument = %s AND interval = %s "
                "AND model_id IS NOT DISTINCT FROM %s AND day IS NOT DISTINCT FROM %s "
                "ORDER BY request_id LIMIT 1",
                (requested_by, kind, instrument, interval, model_id, day),
            ).fetchone()
        )
        conn.commit()
    assert row is not None
    return GovernanceRequest(*row), inserted is not None


def read_governance_requests(
    db: Database,
    *,
    instrument: str | None = None,
    interval: str | None = None,
    pending_only: bool = False,
) -> list[GovernanceRequest]:
    """Stored governance requests, oldest first.

    Args:
        db: The database.
        instrument: Only this instrument's (all when None).
        interval: Only this interval's (all when None).
        pending_only: Only requests not handled yet.
    """
    where: list[str] = []
    params: list[Any] = []
    if instrument is not None:
        where.append("instrument = %s")
        params.append(instrument)
    if interval is not None:
        where.append("interval = %s")
        params.append(interval)
    if pending_only:
        where.append("handled_at IS NULL")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with db.connect() as conn:
        rows = conn.execute(
            f"SELECT {_REQUEST_COLUMNS} FROM governance_requests{clause} ORDER BY request_id",
            params,
        ).fetchall()
    return [GovernanceRequest(*row) for row in rows]


def mark_governance_request_handled(db: Database, request_id: int, outcome: str) -> bool:
    """Record how a pending request was handled (once; a handled request stays as it was).

    Returns:
        True if this call handled it, False if it was already handled.
    """
    _text("outcome", outcome)
    with db.connect() as conn:
        cur = conn.execute(
            "UPDATE governance_requests SET handled_at = now(), outcome = %s "
            "WHERE request_id = %s AND handled_at IS NULL",
            (outcome, request_id),
        )
        conn.commit()
    return cur.rowcount == 1
