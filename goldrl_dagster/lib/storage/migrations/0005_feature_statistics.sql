-- Feature snapshots flag bars whose external inputs (funding, basis, open interest) were missing:
-- such rows are kept for inspection but never used as observations.
ALTER TABLE feature_snapshots ADD COLUMN missing_input boolean NOT NULL DEFAULT false;

-- Per-feature statistics of one feature-snapshot partition (instrument x interval x feature set
-- x UTC day), over the rows outside the warm-up: the reference for drift and OOD checks.
-- Statistics of a feature with no finite value in the partition are NULL, its count 0.
CREATE TABLE feature_statistics (
    instrument    text             NOT NULL,
    interval      text             NOT NULL,
    fingerprint   text             NOT NULL REFERENCES feature_sets (fingerprint),
    day           date             NOT NULL,
    feature       text             NOT NULL,
    rows          bigint           NOT NULL CHECK (rows >= 0),
    count         bigint           NOT NULL CHECK (count >= 0 AND count <= rows),
    missing_rate  double precision NOT NULL CHECK (missing_rate >= 0 AND missing_rate <= 1),
    mean          double precision,
    std           double precision,
    min           double precision,
    q01           double precision,
    q05           double precision,
    q25           double precision,
    q50           double precision,
    q75           double precision,
    q95           double precision,
    q99           double precision,
    max           double precision,
    computed_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval, fingerprint, day, feature)
);
