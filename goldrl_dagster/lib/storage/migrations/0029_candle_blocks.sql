-- Day blocks of candles (lib/storage/candle_blocks.py): the columnar read's aggregate of one
-- completed UTC day of one series, kept so a long range read fetches a few large values instead
-- of having the server aggregate a million rows again.
--
-- Every write to candles bumps the version of the days it touched (statement triggers over the
-- written rows, so COPY, INSERT … ON CONFLICT, UPDATE and DELETE alike); a block is used only
-- while its version equals the day's. A reader builds a missing block from the snapshot it read
-- the day's version in, so a write committed after that snapshot leaves the block stale by
-- version, never trusted.
CREATE TABLE candle_day_versions (
    instrument text   NOT NULL,
    interval   text   NOT NULL,
    day        date   NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (instrument, interval, day)
);

CREATE TABLE candle_blocks (
    instrument text        NOT NULL,
    interval   text        NOT NULL,
    day        date        NOT NULL,
    version    bigint      NOT NULL,  -- candle_day_versions.version it was built at (0: none)
    layout     text        NOT NULL,  -- the records' fields (name:kind,...): used only if equal
    bars       integer     NOT NULL CHECK (bars >= 0),
    types      jsonb       NOT NULL,  -- candles' column types when built (checked on read)
    records    bytea       NOT NULL,  -- fixed-size records of binary send values, by open_time
    sources    bytea       NOT NULL,  -- the source texts concatenated (lengths in the records)
    built_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval, day)
);
-- Stored out of line, uncompressed: a read copies them, never inflates them.
ALTER TABLE candle_blocks ALTER COLUMN records SET STORAGE EXTERNAL,
    ALTER COLUMN sources SET STORAGE EXTERNAL;

CREATE FUNCTION candle_days_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN  -- a row moved to another day changes both days
        INSERT INTO candle_day_versions AS v (instrument, interval, day)
        SELECT DISTINCT instrument, interval, (open_time AT TIME ZONE 'UTC')::date
        FROM (SELECT instrument, interval, open_time FROM written
              UNION ALL SELECT instrument, interval, open_time FROM replaced) AS rows
        ON CONFLICT (instrument, interval, day) DO UPDATE SET version = v.version + 1;
    ELSE
        INSERT INTO candle_day_versions AS v (instrument, interval, day)
        SELECT DISTINCT instrument, interval, (open_time AT TIME ZONE 'UTC')::date FROM written
        ON CONFLICT (instrument, interval, day) DO UPDATE SET version = v.version + 1;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER candles_inserted_days AFTER INSERT ON candles
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION candle_days_written();
CREATE TRIGGER candles_updated_days AFTER UPDATE ON candles
    REFERENCING OLD TABLE AS replaced NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION candle_days_written();
CREATE TRIGGER candles_deleted_days AFTER DELETE ON candles
    REFERENCING OLD TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION candle_days_written();

-- TRUNCATE has no transition rows: every day's version moves on.
CREATE FUNCTION candle_days_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE candle_day_versions SET version = version + 1;
    DELETE FROM candle_blocks;
    RETURN NULL;
END;
$$;
CREATE TRIGGER candles_truncated_days AFTER TRUNCATE ON candles
    FOR EACH STATEMENT EXECUTE FUNCTION candle_days_truncated();
