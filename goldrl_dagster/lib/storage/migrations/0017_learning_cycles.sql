-- The continuous-learning loop: one cycle per market and newly complete day. A cycle trains a
-- small set of candidates (dataset requests differing in feature set and reward) on the rolling
-- window ending that day, evaluates them, and the promotion gate judges the best against the
-- champion with every candidate counted as a trial (and fed to the overfitting statistics).
CREATE TABLE learning_cycles (
    cycle_id      text        PRIMARY KEY,          -- instrument|interval|last day
    instrument    text        NOT NULL,
    interval      text        NOT NULL,
    first_day     date        NOT NULL,
    last_day      date        NOT NULL,
    candidates    jsonb       NOT NULL,             -- dataset partition keys, one per candidate
    reason        text        NOT NULL,             -- why it started (new day, retrain request)
    started_at    timestamptz NOT NULL DEFAULT now(),
    judged_at     timestamptz,
    decision_id   bigint      REFERENCES promotion_decisions (decision_id),
    outcome       text,
    CHECK (first_day <= last_day)
);
CREATE INDEX learning_cycles_market_idx ON learning_cycles (instrument, interval, last_day);
