"""SLOs, burn-rate alerts and their webhook (no Dagster here: the sensor in defs/monitoring).

``slo``: objectives and multi-window burn-rate evaluation; ``conditions``: what is wrong now,
read from PostgreSQL (heartbeats, orders, reconciliations, gaps) and from failed asset checks the
sensor passes in; ``dispatch``: deduplication and rate limit, remembered in PostgreSQL;
``webhook``: the Slack/Telegram-compatible post with retries.
"""
