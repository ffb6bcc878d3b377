-- What the loss limits are measured from: the equity at the start of the UTC day and the peak
-- equity, per account and instrument. Kept in the database so a restart continues the day's
-- loss and the drawdown instead of starting them again from the equity it finds.
CREATE TABLE equity_watermarks (
    account_id        text        NOT NULL REFERENCES trading_accounts (account_id),
    instrument        text        NOT NULL,
    day               date        NOT NULL,          -- the UTC day day_start_equity belongs to
    day_start_equity  numeric     NOT NULL,
    peak_equity       numeric     NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, instrument)
);
