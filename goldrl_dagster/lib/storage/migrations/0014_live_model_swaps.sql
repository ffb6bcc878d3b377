-- Champion hot swap: every model change a running live session made (swapped) or turned down
-- (refused), and why. A swap takes effect between two bars: after_bar_open_time is the last bar
-- the previous model saw; the next bar is the new model's first (live_decisions.model_id says
-- so per bar). For a refusal it is the last bar seen when the candidate was turned down (the
-- previous model keeps trading). to_model_id has no foreign key: an unknown model is refused and
-- recorded too. Append-only, like the other history tables.
CREATE TABLE live_model_swaps (
    swap_id             bigserial   PRIMARY KEY,
    session_id          text        NOT NULL REFERENCES live_sessions (session_id),
    instrument          text        NOT NULL,
    interval            text        NOT NULL,
    from_model_id       text        NOT NULL,
    to_model_id         text        NOT NULL,
    outcome             text        NOT NULL CHECK (outcome IN ('swapped', 'refused')),
    reason              text        NOT NULL,
    trigger             text        NOT NULL,  -- 'notification' | 'poll' | 'listener connected'
    from_model_sha256   text,
    to_model_sha256     text,                  -- the verified artifact (swapped only)
    after_bar_open_time timestamptz,
    at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_model_swaps_session_idx ON live_model_swaps (session_id, swap_id);
CREATE INDEX live_model_swaps_market_idx ON live_model_swaps (instrument, interval, at);
CREATE TRIGGER live_model_swaps_append_only BEFORE UPDATE OR DELETE ON live_model_swaps
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();
