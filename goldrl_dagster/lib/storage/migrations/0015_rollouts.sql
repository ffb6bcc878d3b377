-- Staged rollout of a challenger that passed the promotion gate: shadow (decides beside the
-- champion on the same bars, recorded, never traded) -> canary (trades at a fraction of the size)
-- -> full (becomes the market's champion). Each stage is judged on live evidence and breach rules
-- roll it back to the last stable champion. At most one rollout is in progress per market.
CREATE TABLE rollouts (
    rollout_id       bigserial   PRIMARY KEY,
    instrument       text        NOT NULL,
    interval         text        NOT NULL,
    challenger       text        NOT NULL REFERENCES models (model_id),
    stable_champion  text        NOT NULL REFERENCES models (model_id),  -- rolled back to
    decision_id      bigint      NOT NULL REFERENCES promotion_decisions (decision_id),
    stage            text        NOT NULL
        CHECK (stage IN ('shadow', 'canary', 'full', 'rolled_back', 'aborted')),
    canary_fraction  double precision NOT NULL CHECK (canary_fraction > 0 AND canary_fraction <= 1),
    config           jsonb       NOT NULL,   -- the evidence and breach thresholds it is judged by
    stage_started_at timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz
);
CREATE UNIQUE INDEX rollouts_one_in_progress_per_market ON rollouts (instrument, interval)
    WHERE stage IN ('shadow', 'canary');

-- Every stage change with its reason and the evidence behind it. Append-only.
CREATE TABLE rollout_transitions (
    transition_id bigserial   PRIMARY KEY,
    rollout_id    bigint      NOT NULL REFERENCES rollouts (rollout_id),
    from_stage    text,
    to_stage      text        NOT NULL,
    reason        text        NOT NULL,
    evidence      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    decided_by    text        NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollout_transitions_rollout_idx ON rollout_transitions (rollout_id, transition_id);
CREATE TRIGGER rollout_transitions_append_only BEFORE UPDATE OR DELETE ON rollout_transitions
    FOR EACH ROW EXECUTE FUNCTION refuse_history_change();

-- What a shadow model would have done on each bar a live session decided: recorded, not traded.
CREATE TABLE live_shadow_decisions (
    session_id         text        NOT NULL REFERENCES live_sessions (session_id),
    instrument         text        NOT NULL,
    bar_open_time      timestamptz NOT NULL,
    model_id           text        NOT NULL,
    model_sha256       text        NOT NULL,
    rollout_id         bigint      REFERENCES rollouts (rollout_id),
    observation_sha256 text        NOT NULL,
    action             integer     NOT NULL,
    target_position    integer     NOT NULL CHECK (target_position IN (-1, 0, 1)),
    price              double precision NOT NULL,
    decided_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, model_id, bar_open_time)
);
CREATE INDEX live_shadow_decisions_rollout_idx ON live_shadow_decisions (rollout_id, bar_open_time);

-- The rollout (and its stage) a live decision was taken under: canary evidence is the challenger's
-- own orders and fills.
ALTER TABLE live_decisions
    ADD COLUMN rollout_id     bigint REFERENCES rollouts (rollout_id),
    ADD COLUMN size_fraction  double precision NOT NULL DEFAULT 1.0;
