-- Market feeds beside the candles: funding, mark price, premium index, open interest, 24h
-- ticker, order book, trades, and the data-quality findings recorded about any of them.
-- Every feed row says where it came from (source) and when goldrl stored it (ingested_at).

CREATE TABLE funding_rates (
    instrument              text             NOT NULL,
    funding_time            timestamptz      NOT NULL,
    funding_rate            double precision NOT NULL,
    -- As reported by the exchange (1, 2, 4 or 8 h); NULL when the exchange did not say.
    funding_interval_hours  integer          CHECK (funding_interval_hours > 0),
    source       text        NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, funding_time)
);

CREATE TABLE mark_price_candles (
    instrument   text             NOT NULL,
    interval     text             NOT NULL,
    open_time    timestamptz      NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    source       text             NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval, open_time)
);

CREATE TABLE premium_index_snapshots (
    instrument              text             NOT NULL,
    snapshot_time           timestamptz      NOT NULL,
    mark_price              double precision NOT NULL,
    index_price             double precision NOT NULL,
    last_funding_rate       double precision NOT NULL,
    next_funding_time       timestamptz,
    funding_interval_hours  integer          CHECK (funding_interval_hours > 0),
    source       text        NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, snapshot_time)
);

CREATE TABLE open_interest_snapshots (
    instrument     text             NOT NULL,
    snapshot_time  timestamptz      NOT NULL,
    -- The number exactly as BingX reports it; sources disagree on its unit (contracts, base
    -- units or USDT), so unit_note records what goldrl believed when storing it.
    open_interest  double precision NOT NULL CHECK (open_interest >= 0),
    unit_note      text             NOT NULL,
    source       text        NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, snapshot_time)
);

CREATE TABLE ticker_snapshots (
    instrument            text             NOT NULL,
    snapshot_time         timestamptz      NOT NULL,
    last_price            double precision NOT NULL,
    open_price            double precision,
    high_price            double precision,
    low_price             double precision,
    volume                double precision,
    quote_volume          double precision,
    price_change_percent  double precision,
    bid_price             double precision,
    bid_qty               double precision,
    ask_price             double precision,
    ask_qty               double precision,
    source       text        NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, snapshot_time)
);

CREATE TABLE depth_snapshots (
    instrument     text               NOT NULL,
    snapshot_time  timestamptz        NOT NULL,
    depth_limit    integer            NOT NULL CHECK (depth_limit > 0),
    -- Best first: bids descending, asks ascending; prices and quantities index-aligned.
    bid_prices     double precision[] NOT NULL,
    bid_qtys       double precision[] NOT NULL,
    ask_prices     double precision[] NOT NULL,
    ask_qtys       double precision[] NOT NULL,
    source       text        NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, snapshot_time),
    CHECK (cardinality(bid_prices) = cardinality(bid_qtys)),
    CHECK (cardinality(ask_prices) = cardinality(ask_qtys))
);

CREATE TABLE trades (
    instrument      text             NOT NULL,
    -- BingX trade pushes carry no id: the key is derived from the trade's content and time.
    trade_key       text             NOT NULL,
    trade_time      timestamptz      NOT NULL,
    price           double precision NOT NULL CHECK (price > 0),
    quantity        double precision NOT NULL CHECK (quantity > 0),
    is_buyer_maker  boolean          NOT NULL,
    source       text        NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, trade_key)
);
CREATE INDEX trades_by_time ON trades (instrument, trade_time);

CREATE TABLE data_quality_findings (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL,
    instrument  text        NOT NULL,
    -- '' when a finding concerns no particular interval, so the unique key stays total.
    interval    text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL,
    severity    text        NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    detail      jsonb       NOT NULL,
    found_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, instrument, interval, at)
);
