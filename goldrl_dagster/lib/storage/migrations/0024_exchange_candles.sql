-- The exchange's own higher-interval klines (1h, 4h, 1d, ...), kept apart from `candles`.
-- BingX serves minute bars only so far back; its hourly and daily bars reach further. They are
-- stored here, labelled as exchange bars, so long-horizon datasets can use them where no bar
-- aggregated from 1m exists. Where both exist, the aggregated bar in `candles` is canonical and
-- a disagreement is an `interval_mismatch` data-quality finding.

CREATE TABLE exchange_candles (
    instrument   text             NOT NULL,
    interval     text             NOT NULL CHECK (interval <> '1m'),
    open_time    timestamptz      NOT NULL,
    open         double precision NOT NULL,
    high         double precision NOT NULL,
    low          double precision NOT NULL,
    close        double precision NOT NULL,
    volume       double precision NOT NULL,
    source       text             NOT NULL
        CHECK (source IN ('bingx_rest', 'bingx_ws', 'import', 'simulator')),
    ingested_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval, open_time),
    CHECK (high >= low AND high >= open AND high >= close AND low <= open AND low <= close)
);
