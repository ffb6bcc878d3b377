-- Every model records the cost model it was trained under (fees, slippage, funding, rounding),
-- so an evaluation or a live session can refuse or flag a mismatch without opening the card.
ALTER TABLE models ADD COLUMN cost_model_fingerprint text;

-- Models registered before this migration carry the fingerprint in their card.
UPDATE models SET cost_model_fingerprint = card ->> 'cost_model_fingerprint'
WHERE cost_model_fingerprint IS NULL;

CREATE INDEX models_cost_model_fingerprint_idx ON models (cost_model_fingerprint);
