-- The live engine's health summary, one row per session upserted at every heartbeat (the same
-- numbers its Prometheus endpoint serves), and the alert sensor's memory: which alert is firing
-- (deduplication) and what was posted when (rate limit).
--
-- health holds the whole summary (heartbeat_store.Heartbeat.health): counters, the last
-- latencies, and for each engine-measured SLI the (bad, total) event counts over the burn-rate
-- windows (5m, 30m, 1h, 6h) that the SLO sensor evaluates.
CREATE TABLE live_heartbeats (
    session_id            text        PRIMARY KEY REFERENCES live_sessions (session_id),
    instrument            text        NOT NULL,
    mode                  text        NOT NULL CHECK (mode IN ('paper', 'live')),
    account_id            text,
    model_id              text        NOT NULL,
    stage                 text,                       -- rollout stage of the trading model
    beat_at               timestamptz NOT NULL DEFAULT now(),
    heartbeat_seconds     double precision NOT NULL CHECK (heartbeat_seconds > 0),
    decisions             bigint      NOT NULL CHECK (decisions >= 0),
    orders                bigint      NOT NULL CHECK (orders >= 0),
    order_rejects         bigint      NOT NULL CHECK (order_rejects >= 0),
    reconnects            bigint      NOT NULL CHECK (reconnects >= 0),
    last_bar_open_time    timestamptz,
    reconciliation_passed boolean,                    -- NULL before the first report
    equity                double precision,
    position              double precision NOT NULL,
    exposure              double precision NOT NULL,
    degraded              boolean     NOT NULL,
    health                jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX live_heartbeats_beat ON live_heartbeats (beat_at DESC);

-- One row per alert key (SLO or condition and its subject): firing since when, last posted when.
-- A firing alert is posted once; it is posted again only after it resolved and fired anew.
CREATE TABLE alert_state (
    alert_key        text        PRIMARY KEY CHECK (btrim(alert_key) <> ''),
    slo              text        NOT NULL,
    severity         text        NOT NULL CHECK (severity IN ('page', 'ticket')),
    firing           boolean     NOT NULL,
    first_fired_at   timestamptz NOT NULL,
    last_seen_at     timestamptz NOT NULL,
    resolved_at      timestamptz,
    notified_at      timestamptz,                     -- NULL: firing but not posted yet
    message          text        NOT NULL
);
CREATE INDEX alert_state_firing ON alert_state (firing, notified_at);

-- Every post attempt (the rate limit counts the successful ones in its window).
CREATE TABLE alert_deliveries (
    delivery_id  bigserial   PRIMARY KEY,
    alert_key    text        NOT NULL REFERENCES alert_state (alert_key),
    at           timestamptz NOT NULL DEFAULT now(),
    delivered    boolean     NOT NULL,
    detail       text
);
CREATE INDEX alert_deliveries_at ON alert_deliveries (at DESC) WHERE delivered;
