-- One row per live/paper session. position_changes counts decisions after which the position
-- differs from the one before it (the first decision is compared with flat: a session that
-- continues an account's position counts its first decision as a change if it held one).
-- orders_sent / blocked_by_risk / held count what became of the decisions' orders (outcome
-- written by the execution engine; sessions before it have no outcome).
with

sessions as (

    select * from {{ ref('stg_live__sessions') }}

),

decisions as (

    select
        *,
        lag(position_after, 1, 0::double precision) over (
            partition by session_id order by bar_open_time
        ) as position_before,
        row_number() over (
            partition by session_id order by bar_open_time desc
        ) as recency

    from {{ ref('stg_live__decisions') }}

),

per_session as (

    select
        session_id,
        count(*) as decision_count,
        min(bar_open_time) as first_bar_open_time,
        max(bar_open_time) as last_bar_open_time,
        count(*) filter (where position_after <> position_before) as position_changes,
        max(equity_after) filter (where recency = 1) as last_equity,
        max(position_after) filter (where recency = 1) as last_position,
        count(distinct model_id) as model_count,
        count(*) filter (where client_order_id is not null) as orders_sent,
        count(*) filter (where outcome like 'blocked:%') as blocked_by_risk,
        count(*) filter (where outcome like 'held:%') as held

    from decisions
    group by session_id

),

final as (

    select
        sessions.session_id,
        sessions.mode,
        sessions.instrument,
        sessions.account_id,
        sessions.started_at,
        sessions.stopped_at,
        sessions.stop_reason,
        coalesce(per_session.decision_count, 0) as decision_count,
        per_session.first_bar_open_time,
        per_session.last_bar_open_time,
        per_session.last_equity,
        per_session.last_position,
        coalesce(per_session.position_changes, 0) as position_changes,
        coalesce(per_session.model_count, 0) as model_count,
        coalesce(per_session.orders_sent, 0) as orders_sent,
        coalesce(per_session.blocked_by_risk, 0) as blocked_by_risk,
        coalesce(per_session.held, 0) as held

    from sessions
    left join per_session on sessions.session_id = per_session.session_id

)

select * from final
