-- The audit log: every governance and operator action (promotions, champion moves, rollout
-- stages, risk-limit versions, halts lifted, live starts …) as an append-only row with who, why,
-- before and after, hash-chained to the previous row so an edited, deleted or inserted row is
-- detected (`goldrl audit verify`; lib/storage/audit_log.py defines the hash).
--
-- Rows are written only by append_audit, inside the audited change's transaction, under a
-- transaction-scoped advisory lock: entry_id is the previous entry's id + 1 (not a sequence, so
-- a rolled-back change leaves no gap) and prev_hash the previous entry's hash (64 zeros for the
-- first). The primary key and UNIQUE (prev_hash) make a forked chain impossible even for a
-- writer that bypassed the lock.
CREATE TABLE audit_log (
    entry_id   bigint      PRIMARY KEY CHECK (entry_id > 0),
    at         timestamptz NOT NULL,
    actor      text        NOT NULL CHECK (btrim(actor) <> ''),
    action     text        NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    subject    text,                      -- what it is about: market, model, account, …
    reason     text,
    before     jsonb,
    after      jsonb,
    prev_hash  text        NOT NULL UNIQUE CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    entry_hash text        NOT NULL UNIQUE CHECK (entry_hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX audit_log_action_idx ON audit_log (action, entry_id);
CREATE INDEX audit_log_subject_idx ON audit_log (subject, entry_id);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
