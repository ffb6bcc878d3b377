-- goldrl system of record: market data, features, datasets, models, evaluation, promotion, live.
-- Applied inside the schema named by GOLDRL_SCHEMA (search_path is set by the migrator).

CREATE TABLE instruments (
    symbol              text        NOT NULL,
    valid_from          timestamptz NOT NULL,
    valid_to            timestamptz,
    contract_id         text,
    asset               text        NOT NULL,
    display_name        text,
    currency            text        NOT NULL,
    price_precision     integer     NOT NULL CHECK (price_precision >= 0),
    quantity_precision  integer     NOT NULL CHECK (quantity_precision >= 0),
    contract_size       double precision,
    min_quantity        double precision NOT NULL CHECK (min_quantity >= 0),
    min_notional        double precision NOT NULL CHECK (min_notional >= 0),
    maker_fee_rate      double precision NOT NULL,
    taker_fee_rate      double precision NOT NULL,
    max_long_leverage   integer,
    max_short_leverage  integer,
    status              integer,
    launch_time         timestamptz,
    source              text        NOT NULL,
    content_sha256      text        NOT NULL,
    raw                 jsonb       NOT NULL,
    PRIMARY KEY (symbol, valid_from)
);
CREATE UNIQUE INDEX instruments_current ON instruments (symbol) WHERE valid_to IS NULL;

CREATE TABLE candles (
    instrument   text             NOT NULL,
    interval     text             NOT NULL,
    open_time    timestamptz      NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    source       text             NOT NULL,
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval, open_time)
);

CREATE TABLE feature_sets (
    fingerprint  text        PRIMARY KEY,
    name         text        NOT NULL,
    version      integer     NOT NULL,
    feature_names text[]     NOT NULL,
    spec         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feature_snapshots (
    instrument   text             NOT NULL,
    interval     text             NOT NULL,
    fingerprint  text             NOT NULL REFERENCES feature_sets (fingerprint),
    open_time    timestamptz      NOT NULL,
    is_warmup    boolean          NOT NULL,
    feature_values double precision[] NOT NULL,
    PRIMARY KEY (instrument, interval, fingerprint, open_time)
);

CREATE TABLE artifacts (
    sha256      text        PRIMARY KEY,
    uri         text        NOT NULL,
    size_bytes  bigint      NOT NULL,
    kind        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dataset_versions (
    dataset_hash     text        PRIMARY KEY,
    instruments      text[]      NOT NULL,
    interval         text        NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    feature_fingerprint text     NOT NULL REFERENCES feature_sets (fingerprint),
    row_count        bigint      NOT NULL,
    artifact_sha256  text        NOT NULL REFERENCES artifacts (sha256),
    config           jsonb       NOT NULL,
    lineage          jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE models (
    model_id          text        PRIMARY KEY,
    artifact_sha256   text        NOT NULL REFERENCES artifacts (sha256),
    dataset_hash      text        NOT NULL REFERENCES dataset_versions (dataset_hash),
    feature_fingerprint text      NOT NULL,
    algorithm         text        NOT NULL,
    seed              integer     NOT NULL,
    card              jsonb       NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE evaluation_reports (
    report_id     text        PRIMARY KEY,
    model_id      text        NOT NULL REFERENCES models (model_id),
    dataset_hash  text        NOT NULL REFERENCES dataset_versions (dataset_hash),
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    policy_metrics   jsonb    NOT NULL,
    baseline_metrics jsonb    NOT NULL,
    trades_sha256 text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE promotion_decisions (
    decision_id   bigserial   PRIMARY KEY,
    model_id      text        NOT NULL REFERENCES models (model_id),
    report_id     text        NOT NULL REFERENCES evaluation_reports (report_id),
    previous_champion text,
    promoted      boolean     NOT NULL,
    reasons       jsonb       NOT NULL,
    decided_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per slot; moving the champion is an UPDATE of this pointer, never a rewrite of models.
CREATE TABLE champion (
    slot          text        PRIMARY KEY,
    model_id      text        NOT NULL REFERENCES models (model_id),
    decision_id   bigint      NOT NULL REFERENCES promotion_decisions (decision_id),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE live_sessions (
    session_id    text        PRIMARY KEY,
    mode          text        NOT NULL CHECK (mode IN ('paper', 'live')),
    instrument    text        NOT NULL,
    stream_url    text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz,
    stop_reason   text
);

CREATE TABLE live_decisions (
    decision_id       bigserial   PRIMARY KEY,
    session_id        text        NOT NULL REFERENCES live_sessions (session_id),
    instrument        text        NOT NULL,
    bar_open_time     timestamptz NOT NULL,
    model_id          text        NOT NULL,
    model_sha256      text        NOT NULL,
    dataset_hash      text        NOT NULL,
    feature_fingerprint text      NOT NULL,
    observation_sha256 text       NOT NULL,
    action            integer     NOT NULL,
    target_position   integer     NOT NULL,
    price             double precision NOT NULL,
    position_after    double precision NOT NULL,
    cash_after        double precision NOT NULL,
    equity_after      double precision NOT NULL,
    decided_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, instrument, bar_open_time)
);

CREATE TABLE paper_fills (
    fill_id       bigserial   PRIMARY KEY,
    decision_id   bigint      NOT NULL REFERENCES live_decisions (decision_id),
    client_order_id text      NOT NULL UNIQUE,
    side          text        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity      double precision NOT NULL CHECK (quantity > 0),
    price         double precision NOT NULL,
    fee           double precision NOT NULL,
    filled_at     timestamptz NOT NULL DEFAULT now()
);
