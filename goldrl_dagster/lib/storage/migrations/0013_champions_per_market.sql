-- Governance: one champion per instrument x interval (one global slot served every market),
-- evaluations labelled with the market they scored (the number of trials per market counts every
-- model ever evaluated on it), the daily PnL series and policy diagnostics the statistical gate
-- reads, and decisions that name the market, the champion evaluation they were judged against
-- and the number of trials at the time.

ALTER TABLE evaluation_reports
    ADD COLUMN instrument  text,
    ADD COLUMN interval    text,
    ADD COLUMN daily_pnl   jsonb NOT NULL DEFAULT '{}'::jsonb,  -- {run: [[day, net pnl], ...]}
    ADD COLUMN diagnostics jsonb NOT NULL DEFAULT '{}'::jsonb;  -- the policy's behaviour
UPDATE evaluation_reports r SET instrument = d.instruments[1], interval = d.interval
FROM dataset_versions d WHERE d.dataset_hash = r.dataset_hash;
ALTER TABLE evaluation_reports
    ALTER COLUMN instrument SET NOT NULL,
    ALTER COLUMN interval SET NOT NULL;
CREATE INDEX evaluation_reports_market_idx ON evaluation_reports (instrument, interval, model_id);

ALTER TABLE promotion_decisions
    ADD COLUMN instrument         text,
    ADD COLUMN interval           text,
    ADD COLUMN champion_report_id text REFERENCES evaluation_reports (report_id),
    ADD COLUMN trials             integer CHECK (trials >= 1),
    ADD COLUMN decided_by         text NOT NULL DEFAULT 'goldrl';
UPDATE promotion_decisions p SET instrument = r.instrument, interval = r.interval
FROM evaluation_reports r WHERE r.report_id = p.report_id;
ALTER TABLE promotion_decisions
    ALTER COLUMN instrument SET NOT NULL,
    ALTER COLUMN interval SET NOT NULL;
CREATE INDEX promotion_decisions_market_idx ON promotion_decisions (instrument, interval, model_id);

-- One row per market; moving a champion is an UPDATE of its pointer, never a rewrite of models.
CREATE TABLE champions (
    instrument   text        NOT NULL,
    interval     text        NOT NULL,
    model_id     text        NOT NULL REFERENCES models (model_id),
    decision_id  bigint      NOT NULL REFERENCES promotion_decisions (decision_id),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval)
);
-- The global champion becomes the champion of the market its model was trained on.
INSERT INTO champions (instrument, interval, model_id, decision_id, updated_at)
SELECT d.instruments[1], d.interval, c.model_id, c.decision_id, c.updated_at
FROM champion c
JOIN models m ON m.model_id = c.model_id
JOIN dataset_versions d ON d.dataset_hash = m.dataset_hash;
DROP TABLE champion;
