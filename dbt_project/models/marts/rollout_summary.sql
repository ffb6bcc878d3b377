-- One row per staged rollout: when it entered each stage, how long it spent in shadow and
-- canary, how it ended, and what its challenger traded live (its decisions and fills under the
-- rollout, and their mean slippage in bps, positive = cost).
-- outcome: 'in_progress' (shadow/canary), 'promoted' (full), 'rolled_back' or 'aborted'.
with

rollouts as (

    select * from {{ ref('stg_governance__rollouts') }}

),

transitions as (

    select
        rollout_id,
        count(*) as transition_count,
        min(transitioned_at) filter (where to_stage = 'shadow') as shadow_at,
        min(transitioned_at) filter (where to_stage = 'canary') as canary_at,
        min(transitioned_at) filter (where to_stage = 'full') as full_at,
        min(transitioned_at) filter (where to_stage in ('rolled_back', 'aborted')) as stopped_at,
        (array_agg(reason order by transitioned_at desc, transition_id desc))[1] as last_reason

    from {{ ref('stg_governance__rollout_transitions') }}
    group by rollout_id

),

challenger_decisions as (

    select rollout_id, count(*) as canary_decisions
    from {{ ref('int_live__decision_stages') }}
    where rollout_id is not null and stage <> 'champion'
    group by rollout_id

),

challenger_fills as (

    select
        rollout_id,
        count(*) as canary_fills,
        avg(slippage_bps) as canary_mean_slippage_bps

    from {{ ref('fill_slippage') }}
    where rollout_id is not null and stage <> 'champion'
    group by rollout_id

),

final as (

    select
        rollouts.rollout_id,
        rollouts.instrument,
        rollouts.interval,
        rollouts.challenger_model_id,
        rollouts.stable_champion_model_id,
        rollouts.decision_id,
        rollouts.stage as current_stage,
        case
            when rollouts.in_progress then 'in_progress'
            when rollouts.stage = 'full' then 'promoted'
            else rollouts.stage
        end as outcome,
        rollouts.canary_fraction,
        rollouts.started_at,
        rollouts.ended_at,
        transitions.canary_at,
        transitions.full_at,
        transitions.stopped_at,
        (extract(epoch from coalesce(
            transitions.canary_at, transitions.stopped_at, rollouts.ended_at, now()
        ) - coalesce(transitions.shadow_at, rollouts.started_at)) / 3600)::double precision
            as shadow_hours,
        case when transitions.canary_at is not null then
            (extract(epoch from coalesce(
                transitions.full_at, transitions.stopped_at, rollouts.ended_at, now()
            ) - transitions.canary_at) / 3600)::double precision
        end as canary_hours,
        coalesce(transitions.transition_count, 0) as transition_count,
        transitions.last_reason,
        coalesce(challenger_decisions.canary_decisions, 0) as canary_decisions,
        coalesce(challenger_fills.canary_fills, 0) as canary_fills,
        challenger_fills.canary_mean_slippage_bps

    from rollouts
    left join transitions on transitions.rollout_id = rollouts.rollout_id
    left join challenger_decisions on challenger_decisions.rollout_id = rollouts.rollout_id
    left join challenger_fills on challenger_fills.rollout_id = rollouts.rollout_id

)

select * from final
