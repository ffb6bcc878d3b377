-- Walk-forward evaluation reports: the per-fold results, the settings that produced them and the
-- fingerprint of the cost model the folds were scored under. policy_metrics / baseline_metrics
-- keep holding the aggregate over the folds (same keys as before), so readers of the old columns
-- (the promotion gate, dbt) see the stitched walk-forward result.
ALTER TABLE evaluation_reports
    ADD COLUMN folds                  jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN config                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN cost_model_fingerprint text;
