-- Backtest-versus-live parity: one report per live (or paper) session and model on one UTC day,
-- written by the Dagster asset monitoring/backtest_live_parity (lib/parity). The session's
-- decided window is replayed through the Nautilus backtest with the same model, features
-- recomputed from the stored candles by the same feature code, and the same cost model; each
-- bar of the window is compared. Re-materializing a day replaces that day's reports.
--
-- attribution: the live-minus-backtest PnL gap of the window split by cause, in quote units
-- (slippage, latency, missed_bars, feature_mismatch, held_or_blocked, funding, unexplained);
-- the components add up to pnl_gap.
CREATE TABLE parity_reports (
    report_id              bigserial        PRIMARY KEY,
    instrument             text             NOT NULL,
    interval               text             NOT NULL,
    day                    date             NOT NULL,
    session_id             text             NOT NULL REFERENCES live_sessions (session_id),
    model_id               text             NOT NULL,
    mode                   text             NOT NULL,
    first_bar_open_time    timestamptz      NOT NULL,
    last_bar_open_time     timestamptz      NOT NULL,
    window_bars            integer          NOT NULL CHECK (window_bars >= 1),
    live_decisions         integer          NOT NULL CHECK (live_decisions >= 0),
    compared_bars          integer          NOT NULL CHECK (compared_bars >= 0),
    agreeing_bars          integer          NOT NULL CHECK (agreeing_bars >= 0),
    identical_bars         integer          NOT NULL CHECK (identical_bars >= 0),
    identical_agreeing_bars integer         NOT NULL CHECK (identical_agreeing_bars >= 0),
    agreement_pct          double precision CHECK (agreement_pct BETWEEN 0 AND 100),
    identical_agreement_pct double precision CHECK (identical_agreement_pct BETWEEN 0 AND 100),
    feature_mismatch_bars  integer          NOT NULL CHECK (feature_mismatch_bars >= 0),
    missed_bars            integer          NOT NULL CHECK (missed_bars >= 0),
    live_fills             integer          NOT NULL CHECK (live_fills >= 0),
    backtest_fills         integer          NOT NULL CHECK (backtest_fills >= 0),
    mean_fill_gap_bps      double precision,
    max_abs_fill_gap_bps   double precision,
    live_pnl               double precision NOT NULL,
    backtest_pnl           double precision NOT NULL,
    pnl_gap                double precision NOT NULL,
    ledger_residual        double precision,
    attribution            jsonb            NOT NULL,
    order_quantity         double precision NOT NULL,
    cost_model_fingerprint text             NOT NULL,
    feature_fingerprint    text             NOT NULL,
    status                 text             NOT NULL CHECK (status IN ('match', 'mismatch')),
    computed_at            timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (instrument, interval, day, session_id, model_id)
);
CREATE INDEX parity_reports_by_day ON parity_reports (instrument, interval, day);

-- One row per bar of a report's window. live_status: 'decided', 'skipped: <reason>' (the engine
-- saw the bar and did not decide on it) or 'absent' (it never saw it). backtest_target is the
-- policy's target on the recomputed features given the position live held before the bar (the
-- decision compared); backtest_path_target what the backtest's own position path traded to.
-- Prices: decision_price is live's (the bar close it saw), bar_close the stored candle's; fill
-- prices are volume-weighted, the backtest's including the cost model's slippage.
-- cause: why the bar's PnL differs between live and backtest (null when it does not).
CREATE TABLE parity_report_bars (
    report_id              bigint           NOT NULL
                                            REFERENCES parity_reports (report_id) ON DELETE CASCADE,
    bar_open_time          timestamptz      NOT NULL,
    decision_id            bigint,
    live_status            text             NOT NULL,
    outcome                text,
    live_position_before   integer,
    live_target            integer,
    backtest_target        integer,
    backtest_path_target   integer          NOT NULL,
    agree                  boolean,
    feature_match          boolean,
    live_observation_sha256 text,
    backtest_observation_sha256 text,
    decision_price         double precision,
    bar_close              double precision NOT NULL,
    live_fill_quantity     double precision NOT NULL,
    live_fill_price        double precision,
    backtest_fill_quantity double precision NOT NULL,
    backtest_fill_price    double precision,
    fill_gap_bps           double precision,
    live_pnl               double precision NOT NULL,
    backtest_pnl           double precision NOT NULL,
    live_equity            double precision NOT NULL,
    backtest_equity        double precision NOT NULL,
    cause                  text,
    PRIMARY KEY (report_id, bar_open_time)
);
