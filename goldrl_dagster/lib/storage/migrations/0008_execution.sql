-- Execution: orders that survive crashes, an append-only ledger, risk configuration and leases.
--
-- An order is an intent committed BEFORE its request is sent (client order id, decision,
-- instrument, side, quantity quantized to the contract valid then, reduce-only); every change of
-- its state is an append-only row in order_events. Fills, fees, realised PnL and funding are
-- append-only ledger rows keyed for idempotency, so a replayed push or report books nothing twice.

CREATE TABLE trading_accounts (
    account_id   text        PRIMARY KEY,          -- e.g. 'paper:default', 'bingx:<key_id>'
    mode         text        NOT NULL CHECK (mode IN ('paper', 'live')),
    venue        text        NOT NULL,             -- 'paper', 'bingx' or 'simulator'
    quote_asset  text        NOT NULL DEFAULT 'USDT',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    client_order_id   text        PRIMARY KEY CHECK (client_order_id ~ '^[a-z0-9_-]{1,40}$'),
    account_id        text        NOT NULL REFERENCES trading_accounts (account_id),
    session_id        text        REFERENCES live_sessions (session_id),
    decision_id       bigint      REFERENCES live_decisions (decision_id),
    purpose           text        NOT NULL CHECK (purpose IN ('decision', 'flatten', 'operator')),
    instrument        text        NOT NULL,
    side              text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    order_type        text        NOT NULL CHECK (order_type IN ('MARKET', 'LIMIT')),
    quantity          numeric     NOT NULL CHECK (quantity > 0),
    price             numeric     CHECK (price > 0),
    reduce_only       boolean     NOT NULL,
    contract_sha256   text        NOT NULL,        -- the rules the quantity was quantized under
    state             text        NOT NULL CHECK (state IN (
                          'intended', 'submitted', 'accepted', 'partially_filled', 'filled',
                          'cancelled', 'rejected', 'expired', 'unknown')),
    exchange_order_id text,
    executed_qty      numeric     NOT NULL DEFAULT 0 CHECK (executed_qty >= 0),
    avg_price         numeric,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (executed_qty <= quantity)
);
-- One order per decision and purpose: replaying a decision can never create a second order.
CREATE UNIQUE INDEX orders_one_per_decision ON orders (decision_id, purpose)
    WHERE decision_id IS NOT NULL;
CREATE UNIQUE INDEX orders_exchange_id ON orders (account_id, exchange_order_id)
    WHERE exchange_order_id IS NOT NULL;
CREATE INDEX orders_open ON orders (account_id, instrument, state);

CREATE TABLE order_events (
    event_id        bigserial   PRIMARY KEY,
    client_order_id text        NOT NULL REFERENCES orders (client_order_id),
    from_state      text,
    to_state        text        NOT NULL,
    reason          text        NOT NULL,
    detail          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_events_by_order ON order_events (client_order_id, event_id);

CREATE TABLE fills (
    fill_key        text        PRIMARY KEY,       -- deterministic identity of one execution
    client_order_id text        NOT NULL REFERENCES orders (client_order_id),
    account_id      text        NOT NULL REFERENCES trading_accounts (account_id),
    instrument      text        NOT NULL,
    side            text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity        numeric     NOT NULL CHECK (quantity > 0),
    price           numeric     NOT NULL CHECK (price > 0),
    fee             numeric     NOT NULL,          -- positive: paid
    filled_at       timestamptz NOT NULL,
    source          text        NOT NULL CHECK (source IN ('paper', 'stream', 'rest')),
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fills_by_order ON fills (client_order_id);

CREATE TABLE ledger_entries (
    entry_id    bigserial   PRIMARY KEY,
    entry_key   text        NOT NULL UNIQUE,       -- idempotency key (fill key, funding time, …)
    account_id  text        NOT NULL REFERENCES trading_accounts (account_id),
    instrument  text,
    kind        text        NOT NULL CHECK (kind IN ('deposit', 'fee', 'realised_pnl', 'funding',
                                                     'adjustment')),
    amount      numeric     NOT NULL,              -- signed, quote currency: + credits the account
    at          timestamptz NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id, at);

CREATE TABLE ledger_positions (
    account_id   text        NOT NULL REFERENCES trading_accounts (account_id),
    instrument   text        NOT NULL,
    quantity     numeric     NOT NULL DEFAULT 0,   -- signed: + long, - short
    entry_price  numeric     NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, instrument)
);

CREATE TABLE reconciliation_reports (
    report_id        bigserial   PRIMARY KEY,
    account_id       text        NOT NULL REFERENCES trading_accounts (account_id),
    instrument       text        NOT NULL,
    session_id       text        REFERENCES live_sessions (session_id),
    trigger          text        NOT NULL,          -- 'startup', 'periodic', 'unknown_outcome', …
    orders_checked   integer     NOT NULL,
    orders_matched   integer     NOT NULL,
    orders_repaired  integer     NOT NULL,
    orders_unresolved integer    NOT NULL,
    position_delta   numeric     NOT NULL,          -- exchange minus ledger
    balance_delta    numeric,
    passed           boolean     NOT NULL,
    duration_ms      double precision NOT NULL,
    detail           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_reports_latest ON reconciliation_reports (account_id, instrument,
                                                                      report_id DESC);

CREATE TABLE risk_configs (
    version      integer     PRIMARY KEY,
    limits       jsonb       NOT NULL,
    fingerprint  text        NOT NULL,
    created_by   text        NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE risk_events (
    event_id     bigserial   PRIMARY KEY,
    account_id   text        NOT NULL REFERENCES trading_accounts (account_id),
    instrument   text        NOT NULL,
    session_id   text        REFERENCES live_sessions (session_id),
    kind         text        NOT NULL CHECK (kind IN ('block', 'state', 'kill_switch',
                                                      'override')),
    rule         text        NOT NULL,
    value        text,
    limit_value  text,
    reason       text        NOT NULL,
    risk_version integer     REFERENCES risk_configs (version),
    detail       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX risk_events_by_account ON risk_events (account_id, instrument, event_id);

-- One engine trades an account and instrument at a time: a lease with an expiry the holder
-- renews; a crashed holder's lease simply lapses.
CREATE TABLE engine_leases (
    account_id   text        NOT NULL REFERENCES trading_accounts (account_id),
    instrument   text        NOT NULL,
    holder       text        NOT NULL,
    acquired_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (account_id, instrument)
);

-- Sessions carry a heartbeat, so the next start can mark a dead one crashed.
ALTER TABLE live_sessions
    ADD COLUMN account_id   text REFERENCES trading_accounts (account_id),
    ADD COLUMN heartbeat_at timestamptz;

-- The history tables are append-only: an UPDATE or DELETE is refused by the database itself.
CREATE FUNCTION refuse_history_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END;
$$;
CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER fills_append_only BEFORE UPDATE OR DELETE ON fills
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
CREATE TRIGGER risk_events_append_only BEFORE UPDATE OR DELETE ON risk_events
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
