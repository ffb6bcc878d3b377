-- One row per governance event of a market, oldest first: every promotion-gate decision
-- (event_type 'promotion_decision', outcome 'promoted' or 'rejected') and every stage change of
-- a staged rollout (event_type 'rollout_transition', outcome the stage entered). event_id is
-- '<type>:<source id>'; market_sequence numbers the events of a market in time order.
with

decisions as (

    select * from {{ ref('stg_governance__promotion_decisions') }}

),

rollouts as (

    select * from {{ ref('stg_governance__rollouts') }}

),

transitions as (

    select * from {{ ref('stg_governance__rollout_transitions') }}

),

events as (

    select
        'promotion_decision:' || decision_id as event_id,
        'promotion_decision' as event_type,
        decided_at as event_at,
        instrument,
        interval,
        model_id,
        decision_id,
        report_id,
        cast(null as bigint) as rollout_id,
        cast(null as text) as from_stage,
        case when promoted then 'promoted' else 'rejected' end as outcome,
        previous_champion as champion_before,
        reason_count,
        cast(null as text) as reason,
        decided_by

    from decisions

    union all

    select
        'rollout_transition:' || transitions.transition_id as event_id,
        'rollout_transition' as event_type,
        transitions.transitioned_at as event_at,
        rollouts.instrument,
        rollouts.interval,
        rollouts.challenger_model_id as model_id,
        rollouts.decision_id,
        cast(null as text) as report_id,
        transitions.rollout_id,
        transitions.from_stage,
        transitions.to_stage as outcome,
        rollouts.stable_champion_model_id as champion_before,
        cast(null as integer) as reason_count,
        transitions.reason,
        transitions.decided_by

    from transitions
    inner join rollouts on rollouts.rollout_id = transitions.rollout_id

),

final as (

    select
        *,
        row_number() over (
            partition by instrument, interval order by event_at, event_id
        ) as market_sequence

    from events

)

select * from final
