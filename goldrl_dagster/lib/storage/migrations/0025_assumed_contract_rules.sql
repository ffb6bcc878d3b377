-- Contract rules a user declares for a proxy period: history before a contract's listing
-- (another vendor's spot gold, another exchange's perpetual) has no exchange rules of its own.
-- Content-addressed: rules_id is the first 16 hex digits of the sha256 of the canonical rules
-- JSON, so declaring the same rules twice is one row. A dataset version names the rules it
-- assumed (config rules_before_listing = 'assumed:<rules_id>'); its lineage and the model card
-- carry them whole, marked assumed. Nothing here is ever used as the exchange's own rules.
CREATE TABLE assumed_contract_rules (
    rules_id        text        PRIMARY KEY CHECK (rules_id ~ '^[0-9a-f]{16}$'),
    symbol          text        NOT NULL,
    content_sha256  text        NOT NULL UNIQUE,
    rules           jsonb       NOT NULL,
    note            text,
    declared_at     timestamptz NOT NULL DEFAULT now()
);
