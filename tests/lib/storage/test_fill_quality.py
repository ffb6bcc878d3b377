"""Fill slippage against the decision's price, from the real order and fill tables."""

from datetime import UTC, datetime, timedelta

import pytest

from goldrl_dagster.lib.storage.fill_quality import fill_slippage_bps

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def test_slippage_is_signed_by_side_and_counts_decision_orders_only(clean_database):
    db = clean_database
    with db.connect() as conn:
        conn.execute("INSERT INTO trading_accounts (account_id, mode, venue) "
                     "VALUES ('paper:t', 'paper', 'paper')")  # fmt: skip
        conn.execute("INSERT INTO live_sessions (session_id, mode, instrument, stream_url) "
                     "VALUES ('s', 'paper', 'XAUT-USDT', 'ws://t')")  # fmt: skip
        fills = [
            ("BUY", 2000.0, 2000.4, "m", "decision"),
            ("SELL", 2000.0, 1999.8, "m", "decision"),
            ("SELL", 2000.0, 1990.0, "m", "flatten"),
            ("BUY", 2000.0, 2010.0, "other", "decision"),
        ]
        for i, (side, close, fill, model, purpose) in enumerate(fills):
            decision = conn.execute(
                "INSERT INTO live_decisions (session_id, instrument, bar_open_time, model_id, "
                "model_sha256, dataset_hash, feature_fingerprint, observation_sha256, action, "
                "target_position, price, position_after, cash_after, equity_after) VALUES "
                "('s', 'XAUT-USDT', %s, %s, 's', 'd', 'f', 'o', 1, 0, %s, 0, 0, 0) "
                "RETURNING decision_id",
                (T0 + timedelta(minutes=i), model, close),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO orders (client_order_id, account_id, session_id, decision_id, "
                "purpose, instrument, side, order_type, quantity, reduce_only, contract_sha256, "
                "state) VALUES (%s, 'paper:t', 's', %s, %s, 'XAUT-USDT', %s, 'MARKET', 1, false, "
                "'c', 'filled')",
                (f"o{i}", decision, purpose, side),
            )
            conn.execute(
                "INSERT INTO fills (fill_key, client_order_id, account_id, instrument, side, "
                "quantity, price, fee, filled_at, source) VALUES (%s, %s, 'paper:t', "
                "'XAUT-USDT', %s, 1, %s, 0, %s, 'paper')",
                (f"f{i}", f"o{i}", side, fill, T0 + timedelta(minutes=i)),
            )
        conn.commit()
    # A buy 0.4 above a 2000 close paid 2 bps; a sell 0.2 below paid 1 bp; the flatten order
    # and the other model's fill are not this model's decisions.
    assert fill_slippage_bps(db, "XAUT-USDT", "m", T0) == pytest.approx([2.0, 1.0])
    # Only decisions taken since the given moment (the promotion) count.
    assert fill_slippage_bps(db, "XAUT-USDT", "m", datetime.now(UTC) + timedelta(days=1)) == []
