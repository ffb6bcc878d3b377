-- The day-version triggers of 0029 lock days in key order (ORDER BY over the few distinct days,
-- not the written rows), so two writers of overlapping days queue on the versions rows instead
-- of deadlocking. A new migration, not an edit of 0029: databases that applied 0029 refuse an
-- edited one.
CREATE OR REPLACE FUNCTION candle_days_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN  -- a row moved to another day changes both days
        INSERT INTO candle_day_versions AS v (instrument, interval, day)
        SELECT * FROM (
            SELECT DISTINCT instrument, interval, (open_time AT TIME ZONE 'UTC')::date
            FROM (SELECT instrument, interval, open_time FROM written
                  UNION ALL SELECT instrument, interval, open_time FROM replaced) AS rows
        ) AS days ORDER BY 1, 2, 3
        ON CONFLICT (instrument, interval, day) DO UPDATE SET version = v.version + 1;
    ELSE
        INSERT INTO candle_day_versions AS v (instrument, interval, day)
        SELECT * FROM (
            SELECT DISTINCT instrument, interval, (open_time AT TIME ZONE 'UTC')::date FROM written
        ) AS days ORDER BY 1, 2, 3
        ON CONFLICT (instrument, interval, day) DO UPDATE SET version = v.version + 1;
    END IF;
    RETURN NULL;
END;
$$;

-- TRUNCATE has no transition rows: every day's version moves on (rows locked in key order).
CREATE OR REPLACE FUNCTION candle_days_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM candle_day_versions ORDER BY instrument, interval, day FOR UPDATE;
    UPDATE candle_day_versions SET version = version + 1;
    DELETE FROM candle_blocks;
    RETURN NULL;
END;
$$;
