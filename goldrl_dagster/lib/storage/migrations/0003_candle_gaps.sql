-- The lifecycle of every gap found in stored candles: found -> healing -> healed/unrecoverable.
-- A gap is open while found or healing; at most one open gap starts at a given bar of a series,
-- so a re-scan updates the open gap instead of duplicating it.

CREATE TABLE candle_gaps (
    gap_id          bigserial   PRIMARY KEY,
    instrument      text        NOT NULL,
    interval        text        NOT NULL,
    gap_start       timestamptz NOT NULL,
    gap_end         timestamptz NOT NULL,
    missing_bars    integer     NOT NULL CHECK (missing_bars > 0),
    status          text        NOT NULL DEFAULT 'found'
        CHECK (status IN ('found', 'healing', 'healed', 'unrecoverable')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    first_found_at  timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    detail          text,
    CHECK (gap_end > gap_start)
);
CREATE UNIQUE INDEX candle_gaps_open ON candle_gaps (instrument, interval, gap_start)
    WHERE status IN ('found', 'healing');
CREATE INDEX candle_gaps_range ON candle_gaps (instrument, interval, gap_start, gap_end);
