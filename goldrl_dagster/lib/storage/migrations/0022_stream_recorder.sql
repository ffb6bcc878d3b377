-- The streaming recorder (goldrl record): every BingX market channel of the gold contracts,
-- written in idempotent batches (each table has a unique key; writes are ON CONFLICT DO
-- NOTHING), what could not be recovered after a disconnect (stream_gaps), and the recorder's
-- heartbeat (recorder_heartbeats) watched by a Dagster sensor.

-- Trades as the exchange printed them. Pushes carry no id: a trade is keyed by its content
-- (symbol, ms, price, size, side) and its occurrence among trades of that content, so a
-- repeated push or a REST refill of a trade already stored writes nothing.
CREATE TABLE stream_trades (
    symbol          text        NOT NULL,
    content_key     text        NOT NULL,
    occurrence      integer     NOT NULL DEFAULT 1 CHECK (occurrence >= 1),
    time            timestamptz NOT NULL,
    price           double precision NOT NULL CHECK (price > 0),
    quantity        double precision NOT NULL CHECK (quantity > 0),
    is_buyer_maker  boolean     NOT NULL,
    fill_id         text,
    source          text        NOT NULL CHECK (source IN ('push', 'rest')),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, content_key, occurrence)
);
CREATE INDEX stream_trades_time ON stream_trades (symbol, time);

-- Final klines from the stream (closed candles, confirmed or refilled over REST).
CREATE TABLE stream_klines (
    symbol      text        NOT NULL,
    interval    text        NOT NULL,
    open_time   timestamptz NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, interval, open_time)
);

-- Book snapshots: depthN channels as pushed, and the incrDepth book after each update
-- (update_id = its lastUpdateId). Levels best first as [[price, qty], ...].
CREATE TABLE stream_book (
    symbol      text        NOT NULL,
    channel     text        NOT NULL,
    time        timestamptz NOT NULL,
    update_id   bigint,
    best_bid    double precision,
    best_ask    double precision,
    bids        jsonb       NOT NULL,
    asks        jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX stream_book_key ON stream_book (symbol, channel, time, COALESCE(update_id, -1));
CREATE INDEX stream_book_updates ON stream_book (symbol, channel, update_id)
    WHERE update_id IS NOT NULL;

CREATE TABLE stream_tickers (
    symbol               text        NOT NULL,
    time                 timestamptz NOT NULL,
    last_price           double precision NOT NULL,
    open_price           double precision NOT NULL,
    high_price           double precision NOT NULL,
    low_price            double precision NOT NULL,
    volume               double precision NOT NULL,
    quote_volume         double precision NOT NULL,
    price_change_percent double precision NOT NULL,
    bid_price            double precision,
    ask_price            double precision,
    recorded_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, time)
);

CREATE TABLE stream_mark_prices (
    symbol      text        NOT NULL,
    time        timestamptz NOT NULL,
    mark_price  double precision NOT NULL CHECK (mark_price > 0),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, time)
);

CREATE TABLE stream_book_tickers (
    symbol      text        NOT NULL,
    time        timestamptz NOT NULL,
    update_id   bigint,
    bid_price   double precision NOT NULL,
    bid_qty     double precision NOT NULL,
    ask_price   double precision NOT NULL,
    ask_qty     double precision NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX stream_book_tickers_key
    ON stream_book_tickers (symbol, time, COALESCE(update_id, -1));

-- What the recorder could not get back: a channel's stretch lost to a disconnect (book,
-- ticker, mark price have no REST history), a skipped incrDepth id (the book was resynced
-- from a REST snapshot), or trades older than one REST page after a long disconnect.
CREATE TABLE stream_gaps (
    gap_id      bigserial   PRIMARY KEY,
    symbol      text        NOT NULL,
    channel     text        NOT NULL,
    gap_start   timestamptz NOT NULL,
    gap_end     timestamptz NOT NULL CHECK (gap_end >= gap_start),
    reason      text        NOT NULL
        CHECK (reason IN ('disconnect', 'sequence_skip', 'rest_window_exceeded')),
    detail      text        NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (symbol, channel, gap_start, reason)
);
CREATE INDEX stream_gaps_recorded ON stream_gaps (recorded_at DESC);

-- One row per recorder process, upserted at every beat; stats holds its counters.
CREATE TABLE recorder_heartbeats (
    recorder_id       text        PRIMARY KEY CHECK (btrim(recorder_id) <> ''),
    host              text        NOT NULL,
    pid               integer     NOT NULL,
    instruments       text[]      NOT NULL,
    started_at        timestamptz NOT NULL,
    beat_at           timestamptz NOT NULL DEFAULT now(),
    heartbeat_seconds double precision NOT NULL CHECK (heartbeat_seconds > 0),
    stopped_at        timestamptz,
    stats             jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX recorder_heartbeats_beat ON recorder_heartbeats (beat_at DESC);
