-- Operator control commands for the live engine (halt, flatten, resume, pause, unpause, pin,
-- unpin, rollback, risk limits, rollout stage), written by `goldrl ops …` and the Dagster
-- operations jobs, picked up by the engine running the market (LISTEN goldrl_control plus a
-- periodic re-read) and acknowledged with the state that resulted, or refused with the reason.
--
-- Lifecycle: pending -> claimed (by one session) -> applied | refused; a pending command whose
-- expires_at passed before any engine claimed it becomes expired (said so, never applied late).
-- A command claimed by a session that died before acknowledging it is claimed again by the next
-- session on the market (every action is idempotent: halting a halted market, flattening a flat
-- one, …). The audit log holds the issue and the acknowledgement of every command.
CREATE TABLE control_commands (
    command_id      bigserial   PRIMARY KEY,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    actor           text        NOT NULL CHECK (btrim(actor) <> ''),
    reason          text        NOT NULL CHECK (btrim(reason) <> ''),
    action          text        NOT NULL CHECK (action IN (
        'halt', 'flatten', 'resume', 'pause', 'unpause', 'pin', 'unpin', 'rollback',
        'risk_limits', 'rollout_stage')),
    instrument      text        NOT NULL,
    interval        text        NOT NULL,
    params          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    expires_at      timestamptz,            -- NULL: in force until an engine applies it
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'claimed', 'applied', 'refused', 'expired')),
    claimed_by      text,                   -- the live session that took it
    claimed_at      timestamptz,
    acknowledged_at timestamptz,
    result          jsonb,                  -- the engine's state after applying (or refusing)
    refusal         text,                   -- why it could not be applied
    CHECK ((status = 'refused') = (refusal IS NOT NULL)),
    CHECK ((status IN ('applied', 'refused')) = (acknowledged_at IS NOT NULL))
);
CREATE INDEX control_commands_open_idx ON control_commands (instrument, interval, command_id)
    WHERE status IN ('pending', 'claimed');
CREATE INDEX control_commands_market_idx ON control_commands (instrument, interval, action,
    command_id);

-- A model pinned to a market by an operator: it trades there at full size whatever the
-- champion or a rollout says (no shadows), until unpinned. One pin per market.
CREATE TABLE model_pins (
    instrument text        NOT NULL,
    interval   text        NOT NULL,
    model_id   text        NOT NULL REFERENCES models (model_id),
    pinned_by  text        NOT NULL CHECK (btrim(pinned_by) <> ''),
    reason     text        NOT NULL CHECK (btrim(reason) <> ''),
    pinned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument, interval)
);
