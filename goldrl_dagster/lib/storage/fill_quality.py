"""Fill quality of a model's live orders: what each fill paid against its decision's price."""

from __future__ import annotations

from datetime import datetime

from goldrl_dagster.lib.storage.server import Database


def fill_slippage_bps(db: Database, instrument: str, model_id: str, since: datetime) -> list[float]:
    """Slippage of every fill of the model's decision orders since a time, in basis points.

    Positive: paid (a buy above, a sell below the close of the bar the decision was taken on).

    Returns:
        One value per fill, oldest first.
    """
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT CASE WHEN f.side = 'BUY' THEN 1 ELSE -1 END * (f.price - d.price::numeric) "
            "/ d.price::numeric * 10000 FROM fills f "
            "JOIN orders o ON o.client_order_id = f.client_order_id "
            "JOIN live_decisions d ON d.decision_id = o.decision_id "
            "WHERE o.purpose = 'decision' AND d.instrument = %s AND d.model_id = %s "
            "AND d.decided_at >= %s ORDER BY f.filled_at, f.fill_key",
            (instrument, model_id, since),
        ).fetchall()
    return [float(row[0]) for row in rows]
