-- Bars the live engine saw but did not decide on: superseded by a newer closed bar (a refill
-- after a gap) or closed longer ago than the configured age. Their features were updated; no
-- order was considered.
CREATE TABLE live_skipped_bars (
    session_id    text        NOT NULL REFERENCES live_sessions (session_id),
    instrument    text        NOT NULL,
    bar_open_time timestamptz NOT NULL,
    reason        text        NOT NULL,
    skipped_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, instrument, bar_open_time)
);
