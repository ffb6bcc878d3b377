"""Where a stored bar series begins: imported history may start long before the listing."""

from __future__ import annotations

from datetime import UTC, datetime

from goldrl_dagster.lib.storage.server import Database

BAR_TABLES = ("candles", "mark_price_candles")


def oldest_stored_bar(
    db: Database, instrument: str, interval: str, table: str = "candles"
) -> datetime | None:
    """Open time of the oldest stored bar of a series (None: nothing stored).

    Raises:
        ValueError: If ``table`` is not a bar table.
    """
    if table not in BAR_TABLES:
        raise ValueError(f"table {table!r} is not a bar table; expected one of {BAR_TABLES}")
    # One scalar: a psycopg query (an ADBC connection would first load the whole catalog).
    with db.connect() as conn:
        row = conn.execute(
            f"SELECT min(open_time) FROM {table} WHERE instrument = %s AND interval = %s",
            (instrument, interval),
        ).fetchone()
    oldest = row[0] if row else None
    return oldest.astimezone(UTC) if oldest is not None else None
