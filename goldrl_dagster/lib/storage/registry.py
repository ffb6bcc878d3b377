"""Registry rows that tie artifacts to their lineage: datasets, models, evaluations, promotions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from goldrl_dagster.lib.storage.artifacts import StoredArtifact
from goldrl_dagster.lib.storage.audit_log import audit_promotion_decision
from goldrl_dagster.lib.storage.server import Database


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def register_artifact(conn: psycopg.Connection, artifact: StoredArtifact, kind: str) -> None:
    """Record an artifact's location and checksum (no-op if already registered)."""
    conn.execute(
        "INSERT INTO artifacts (sha256, uri, size_bytes, kind) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (sha256) DO NOTHING",
        (artifact.sha256, artifact.uri, artifact.size_bytes, kind),
    )


def artifact_by_sha(db: Database, sha256: str) -> StoredArtifact:
    """Look an artifact up by checksum.

    Raises:
        LookupError: If no artifact with that checksum is registered.
    """
    with db.connect() as conn:
        row = conn.execute(
            "SELECT sha256, uri, size_bytes FROM artifacts WHERE sha256 = %s", (sha256,)
        ).fetchone()
    if row is None:
        raise LookupError(f"no artifact registered with sha256 {sha256}")
    return StoredArtifact(sha256=row[0], uri=row[1], size_bytes=row[2])


def register_feature_set(
    db: Database, fingerprint: str, name: str, version: int, names: list[str], spec: str
) -> None:
    """Record a feature-set version by fingerprint (idempotent)."""
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO feature_sets (fingerprint, name, version, feature_names, spec) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (fingerprint) DO NOTHING",
            (fingerprint, name, version, names, spec),
        )
        conn.commit()


@dataclass(frozen=True)
class DatasetRecord:
    """A dataset version's registry row."""

    dataset_hash: str
    instruments: list[str]
    interval: str
    window_start: datetime
    window_end: datetime
    feature_fingerprint: str
    row_count: int
    artifact: StoredArtifact
    config: dict[str, Any]
    lineage: dict[str, Any]


def record_dataset(db: Database, record: DatasetRecord) -> bool:
    """Register a dataset version and its artifact.

    Returns:
        True if the version is new, False if the same hash was already registered.
    """
    with db.connect() as conn:
        register_artifact(conn, record.artifact, "dataset")
        cur = conn.execute(
            "INSERT INTO dataset_versions (dataset_hash, instruments, interval, window_start, "
            "window_end, feature_fingerprint, row_count, artifact_sha256, config, lineage) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                record.dataset_hash,
                record.instruments,
                record.interval,
                record.window_start,
                record.window_end,
                record.feature_fingerprint,
                record.row_count,
                record.artifact.sha256,
                _json(record.config),
                _json(record.lineage),
            ),
        )
        conn.commit()
        return cur.rowcount == 1


def load_dataset_record(db: Database, dataset_hash: str) -> DatasetRecord:
    """Fetch a dataset version by hash.

    Raises:
        LookupError: If the hash is unknown.
    """
    with db.connect() as conn:
        row = conn.execute(
            "SELECT d.dataset_hash, d.instruments, d.interval, d.window_start, d.window_end, "
            "d.feature_fingerprint, d.row_count, a.sha256, a.uri, a.size_bytes, d.config, "
            "d.lineage FROM dataset_versions d JOIN artifacts a ON a.sha256 = d.artifact_sha256 "
            "WHERE d.dataset_hash = %s",
            (dataset_hash,),
        ).fetchone()
    if row is None:
        raise LookupError(f"unknown dataset version {dataset_hash}")
    return DatasetRecord(
        dataset_hash=row[0],
        instruments=row[1],
        interval=row[2],
        window_start=row[3],
        window_end=row[4],
        feature_fingerprint=row[5],
        row_count=row[6],
        artifact=StoredArtifact(sha256=row[7], uri=row[8], size_bytes=row[9]),
        config=row[10],
        lineage=row[11],
    )


def record_model(
    db: Database,
    *,
    model_id: str,
    artifact: StoredArtifact,
    dataset_hash: str,
    feature_fingerprint: str,
    algorithm: str,
    seed: int,
    card: dict[str, Any],
    cost_model_fingerprint: str | None = None,
) -> None:
    """Register a trained model and its artifact (idempotent on model id).

    ``cost_model_fingerprint`` defaults to the card's ``cost_model_fingerprint``.
    """
    cost_fingerprint = cost_model_fingerprint or card.get("cost_model_fingerprint")
    with db.connect() as conn:
        register_artifact(conn, artifact, "model")
        conn.execute(
            "INSERT INTO models (model_id, artifact_sha256, dataset_hash, feature_fingerprint, "
            "algorithm, seed, card, cost_model_fingerprint) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (model_id) DO NOTHING",
            (model_id, artifact.sha256, dataset_hash, feature_fingerprint, algorithm, seed,
             _json(card), cost_fingerprint),
        )  # fmt: skip
        conn.commit()


@dataclass(frozen=True)
class ModelRecord:
    """A registered model with the provenance the live engine records per decision."""

    model_id: str
    artifact: StoredArtifact
    dataset_hash: str
    feature_fingerprint: str
    card: dict[str, Any]
    cost_model_fingerprint: str | None = None


def load_model_record(db: Database, model_id: str) -> ModelRecord:
    """Fetch a model by id.

    Raises:
        LookupError: If the model id is unknown.
    """
    with db.connect() as conn:
        row = conn.execute(
            "SELECT m.model_id, a.sha256, a.uri, a.size_bytes, m.dataset_hash, "
            "m.feature_fingerprint, m.card, m.cost_model_fingerprint FROM models m "
            "JOIN artifacts a ON a.sha256 = m.artifact_sha256 WHERE m.model_id = %s",
            (model_id,),
        ).fetchone()
    if row is None:
        raise LookupError(f"unknown model {model_id!r}")
    return ModelRecord(
        model_id=row[0],
        artifact=StoredArtifact(sha256=row[1], uri=row[2], size_bytes=row[3]),
        dataset_hash=row[4],
        feature_fingerprint=row[5],
        card=row[6],
        cost_model_fingerprint=row[7],
    )


def record_evaluation(
    db: Database,
    *,
    report_id: str,
    model_id: str,
    dataset_hash: str,
    window_start: datetime,
    window_end: datetime,
    policy_metrics: dict[str, Any],
    baseline_metrics: dict[str, Any],
    trades_sha256: str,
    folds: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    cost_model_fingerprint: str | None = None,
    daily_pnl: dict[str, list[list[Any]]] | None = None,
    diagnostics: dict[str, Any] | None = None,
) -> None:
    """Store an evaluation report (idempotent on report id).

    The report is labelled with the instrument and interval of the dataset it scored, so the
    market's number of trials counts it.

    Args:
        db: The database.
        report_id: Identity of the report (a hash of its inputs).
        model_id: The evaluated model.
        dataset_hash: The dataset version evaluated on.
        window_start: Open time of the first scored bar.
        window_end: Open time of the last scored bar.
        policy_metrics: The policy's (aggregate) metrics.
        baseline_metrics: The baselines' (aggregate) metrics, keyed by name.
        trades_sha256: Hash of the policy's trades (over all folds).
        folds: Per-fold summaries of a walk-forward evaluation.
        config: The evaluation settings.
        cost_model_fingerprint: Fingerprint of the cost model the runs were scored under.
        daily_pnl: Per run, ``[day, net PnL]`` pairs of every UTC day scored.
        diagnostics: The policy's behaviour (turnover, entropy, time in market, ...).

    Raises:
        LookupError: If the dataset version is unknown.
    """
    with db.connect() as conn:
        cur = conn.execute(
            "INSERT INTO evaluation_reports (report_id, model_id, dataset_hash, window_start, "
            "window_end, policy_metrics, baseline_metrics, trades_sha256, folds, config, "
            "cost_model_fingerprint, daily_pnl, diagnostics, instrument, interval) "
            "SELECT %s, %s, d.dataset_hash, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "d.instruments[1], d.interval FROM dataset_versions d WHERE d.dataset_hash = %s "
            "ON CONFLICT (report_id) DO NOTHING",
            (report_id, model_id, window_start, window_end, _json(policy_metrics),
             _json(baseline_metrics), trades_sha256, _json(folds or []), _json(config or {}),
             cost_model_fingerprint, _json(daily_pnl or {}), _json(diagnostics or {}),
             dataset_hash),
        )  # fmt: skip
        if cur.rowcount == 0:
            known = conn.execute(
                "SELECT 1 FROM dataset_versions WHERE dataset_hash = %s", (dataset_hash,)
            ).fetchone()
            if known is None:
                raise LookupError(f"unknown dataset version {dataset_hash}")
        conn.commit()


@dataclass(frozen=True)
class EvaluationRecord:
    """A stored evaluation report: what the promotion gate judges.

    Attributes:
        report_id: Identity of the report.
        model_id: The evaluated model.
        dataset_hash: The dataset version it was scored on.
        instrument: The market's instrument.
        interval: The market's bar interval.
        window_start: Open time of the first scored bar.
        window_end: Open time of the last scored bar.
        policy_metrics: Aggregate metrics of the policy.
        baseline_metrics: Aggregate metrics of each baseline.
        folds: Per-fold summaries (metrics per run).
        config: The evaluation settings.
        cost_model_fingerprint: The cost model the runs were scored under.
        daily_pnl: Per run, ``[day, net PnL]`` pairs.
        diagnostics: The policy's behaviour.
        trades_sha256: Hash of the policy's trades.
    """

    report_id: str
    model_id: str
    dataset_hash: str
    instrument: str
    interval: str
    window_start: datetime
    window_end: datetime
    policy_metrics: dict[str, Any]
    baseline_metrics: dict[str, dict[str, Any]]
    folds: list[dict[str, Any]]
    config: dict[str, Any]
    cost_model_fingerprint: str | None
    daily_pnl: dict[str, list[list[Any]]]
    diagnostics: dict[str, Any]
    trades_sha256: str


_EVALUATION_COLUMNS = (
    "report_id, model_id, dataset_hash, instrument, interval, window_start, window_end, "
    "policy_metrics, baseline_metrics, folds, config, cost_model_fingerprint, daily_pnl, "
    "diagnostics, trades_sha256"
)


def load_evaluation(db: Database, report_id: str) -> EvaluationRecord:
    """Fetch an evaluation report by id.

    Raises:
        LookupError: If the report id is unknown.
    """
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT {_EVALUATION_COLUMNS} FROM evaluation_reports WHERE report_id = %s",
            (report_id,),
        ).fetchone()
    if row is None:
        raise LookupError(f"unknown evaluation report {report_id!r}")
    return EvaluationRecord(*row)


def find_evaluation(
    db: Database, *, model_id: str, dataset_hash: str, config: dict[str, Any]
) -> EvaluationRecord | None:
    """The report of a model on a dataset under exactly these settings, if one is stored."""
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT {_EVALUATION_COLUMNS} FROM evaluation_reports WHERE model_id = %s "
            "AND dataset_hash = %s AND config = %s::jsonb ORDER BY created_at DESC LIMIT 1",
            (model_id, dataset_hash, _json(config)),
        ).fetchone()
    return EvaluationRecord(*row) if row else None


def market_trials(db: Database, instrument: str, interval: str) -> dict[str, list[list[Any]]]:
    """Every model ever evaluated on a market, with the daily PnL of its latest report.

    Selection among many candidates inflates the best one's performance; the promotion gate
    deflates the challenger's Sharpe ratio by this number of trials.

    Returns:
        Model id to the policy's ``[day, net PnL]`` pairs of its latest report on the market
        (empty when the report predates daily series).
    """
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT DISTINCT ON (model_id) model_id, daily_pnl -> 'policy' FROM evaluation_reports "
            "WHERE instrument = %s AND interval = %s ORDER BY model_id, created_at DESC",
            (instrument, interval),
        ).fetchall()
    return {model_id: series or [] for model_id, series in rows}


def current_champion(db: Database, instrument: str, interval: str) -> str | None:
    """Return the champion model id of a market, or None if none was ever promoted there."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT model_id FROM champions WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
    return row[0] if row else None


def record_promotion_decision(
    db: Database,
    *,
    model_id: str,
    report_id: str,
    promoted: bool,
    reasons: list[dict[str, Any]],
    champion_report_id: str | None = None,
    trials: int | None = None,
    decided_by: str = "goldrl",
    move_champion: bool = True,
) -> tuple[int, str | None]:
    """Store a promotion decision and, if promoted, move the market's champion atomically.

    With ``move_champion=False`` a passing decision leaves the pointer alone: the challenger
    goes through a staged rollout, which moves it when it reaches ``full``.

    The market is the report's instrument and interval. Decisions on one market are serialised
    (a transaction-scoped advisory lock), so two concurrent promotions cannot both read the same
    previous champion; the live engine is notified (``goldrl_champion``, JSON payload with the
    instrument, interval and model id).

    Returns:
        The decision id and the market's previous champion model id.

    Raises:
        LookupError: If the report id is unknown.
    """
    with db.connect() as conn:
        market = conn.execute(
            "SELECT instrument, interval FROM evaluation_reports WHERE report_id = %s",
            (report_id,),
        ).fetchone()
        if market is None:
            raise LookupError(f"unknown evaluation report {report_id!r}")
        instrument, interval = market
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('goldrl_champion:' || %s || ':' || %s))",
            (instrument, interval),
        )
        row = conn.execute(
            "SELECT model_id FROM champions WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
        previous = row[0] if row else None
        decision = conn.execute(
            "INSERT INTO promotion_decisions (model_id, report_id, previous_champion, promoted, "
            "reasons, instrument, interval, champion_report_id, trials, decided_by) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING decision_id",
            (model_id, report_id, previous, promoted, _json(reasons), instrument, interval,
             champion_report_id, trials, decided_by),
        ).fetchone()  # fmt: skip
        assert decision is not None
        if promoted and move_champion:
            conn.execute(
                "INSERT INTO champions (instrument, interval, model_id, decision_id) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (instrument, interval) DO UPDATE SET "
                "model_id = EXCLUDED.model_id, decision_id = EXCLUDED.decision_id, "
                "updated_at = now()",
                (instrument, interval, model_id, decision[0]),
            )
            # Wake the live engines' model watchers (LISTEN goldrl_champion).
            payload = {"instrument": instrument, "interval": interval, "model_id": model_id}
            conn.execute("SELECT pg_notify('goldrl_champion', %s)", (_json(payload),))
        audit_promotion_decision(
            conn, decided_by=decided_by, decision_id=decision[0], model_id=model_id,
            report_id=report_id, instrument=instrument, interval=interval,
            previous_champion=previous, promoted=promoted, moved=promoted and move_champion,
            reasons=reasons, trials=trials, champion_report_id=champion_report_id,
        )  # fmt: skip
        conn.commit()
    return decision[0], previous


def pending_challengers(db: Database, instrument: str, interval: str) -> list[str]:
    """Reports of models scored on their own dataset with no promotion decision yet.

    Champion replays (a model scored on another model's dataset) and the candidates of a judged
    learning cycle (judged with their cycle) are never challengers. The newest evaluation
    window comes first, so a partition of the promotion asset judges the
    same report whatever order runs happened in.

    Returns:
        Report ids, newest window first (ties: newest report, then report id).
    """
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT r.report_id FROM evaluation_reports r JOIN models m USING (model_id) "
            "WHERE r.instrument = %s AND r.interval = %s AND r.dataset_hash = m.dataset_hash "
            "AND NOT EXISTS (SELECT 1 FROM promotion_decisions p WHERE p.model_id = r.model_id) "
            # A candidate of a judged learning cycle was judged with its cycle (as a trial).
            "AND NOT EXISTS (SELECT 1 FROM learning_cycles c JOIN dataset_versions d "
            "ON d.dataset_hash = r.dataset_hash WHERE c.judged_at IS NOT NULL "
            "AND c.candidates ? (d.lineage ->> 'partition_key')) "
            "ORDER BY r.window_end DESC, r.created_at DESC, r.report_id",
            (instrument, interval),
        ).fetchall()
    return [row[0] for row in rows]


def latest_own_report(db: Database, model_id: str) -> str | None:
    """The newest report of a model scored on its own dataset, or None."""
    with db.connect() as conn:
        row = conn.execute(
            "SELECT r.report_id FROM evaluation_reports r JOIN models m USING (model_id) "
            "WHERE r.model_id = %s AND r.dataset_hash = m.dataset_hash "
            "ORDER BY r.created_at DESC, r.report_id LIMIT 1",
            (model_id,),
        ).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class ChampionRow:
    """A market's champion pointer."""

    instrument: str
    interval: str
    model_id: str
    decision_id: int
    updated_at: datetime


def list_champions(db: Database) -> list[ChampionRow]:
    """Every market's champion, by instrument and interval."""
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT instrument, interval, model_id, decision_id, updated_at FROM champions "
            "ORDER BY instrument, interval"
        ).fetchall()
    return [ChampionRow(*row) for row in rows]
