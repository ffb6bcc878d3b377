-- Daily feature drift of a market's champion: one row per feature of one UTC day's stored
-- feature snapshots judged against the champion's training reference (PSI over the reference's
-- quantile bins, one-sample KS, out-of-distribution share). Written by the Dagster asset
-- monitoring/feature_drift; re-materializing a day replaces that day's rows of that model.
-- psi / ks_* are NULL when the feature had no finite value that day (count 0).
CREATE TABLE feature_drift_reports (
    instrument          text             NOT NULL,
    interval            text             NOT NULL,
    day                 date             NOT NULL,
    model_id            text             NOT NULL REFERENCES models (model_id),
    fingerprint         text             NOT NULL REFERENCES feature_sets (fingerprint),
    feature             text             NOT NULL,
    psi                 double precision CHECK (psi >= 0),
    ks_statistic        double precision CHECK (ks_statistic >= 0 AND ks_statistic <= 1),
    ks_pvalue           double precision CHECK (ks_pvalue >= 0 AND ks_pvalue <= 1),
    count               bigint           NOT NULL CHECK (count >= 0),
    missing_share       double precision NOT NULL CHECK (missing_share >= 0 AND missing_share <= 1),
    ood_share           double precision NOT NULL CHECK (ood_share >= 0 AND ood_share <= 1),
    status              text             NOT NULL CHECK (status IN ('ok', 'warn', 'alert')),
    reasons             text             NOT NULL DEFAULT '',
    reference_first_day date             NOT NULL,
    reference_last_day  date             NOT NULL CHECK (reference_last_day >= reference_first_day),
    computed_at         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval, day, model_id, feature)
);
CREATE INDEX feature_drift_reports_alert_idx ON feature_drift_reports (instrument, interval, day)
    WHERE status = 'alert';

-- Governance requests: what a monitor asks the retrain loop or the operator plane to do
-- (retrain the market's model, roll the champion back, halt trading). Append-only: a request is
-- never deleted or rewritten; its handler may only fill handled_at and outcome, once. Nothing
-- executes these yet. A requester with a day (the drift monitor) writes a request at most once
-- per (requested_by, kind, instrument, interval, model_id, day): rows without a day never clash.
CREATE TABLE governance_requests (
    request_id    bigserial   PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('retrain', 'rollback', 'halt')),
    instrument    text        NOT NULL,
    interval      text        NOT NULL,
    model_id      text        REFERENCES models (model_id),
    day           date,
    reason        text        NOT NULL,
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    requested_by  text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    handled_at    timestamptz,
    outcome       text,
    CHECK ((handled_at IS NULL) = (outcome IS NULL))
);
CREATE UNIQUE INDEX governance_requests_once_idx
    ON governance_requests (requested_by, kind, instrument, interval, model_id, day);
CREATE INDEX governance_requests_pending_idx ON governance_requests (instrument, interval, created_at)
    WHERE handled_at IS NULL;

CREATE FUNCTION governance_requests_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'governance_requests is append-only: DELETE refused';
    END IF;
    IF OLD.handled_at IS NOT NULL
       OR (to_jsonb(NEW) - 'handled_at' - 'outcome') <> (to_jsonb(OLD) - 'handled_at' - 'outcome')
    THEN
        RAISE EXCEPTION 'governance_requests is append-only: only handled_at and outcome of an unhandled request may be set (request %)',
            OLD.request_id;
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER governance_requests_append_only BEFORE UPDATE OR DELETE ON governance_requests
    FOR EACH ROW EXECUTE FUNCTION governance_requests_guard();
