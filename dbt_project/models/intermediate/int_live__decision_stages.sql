-- Every live decision with the rollout stage it traded under.
--   stage = 'canary' / 'full': the rollout's challenger traded it (the rollout's stage at the
--           time of the decision, from its transitions; by size when no transition says);
--   stage = 'champion': the market's champion traded it (no rollout, or the stable champion
--           trading while the challenger decided in shadow).
-- rollout_stage_at_decision is the rollout's own stage then (shadow, canary, …), if any.
with

decisions as (

    select * from {{ ref('stg_live__decisions') }}

),

rollouts as (

    select * from {{ ref('stg_governance__rollouts') }}

),

transitions as (

    select * from {{ ref('stg_governance__rollout_transitions') }}

),

staged as (

    select
        decisions.*,
        rollouts.challenger_model_id,
        (
            select transitions.to_stage
            from transitions
            where transitions.rollout_id = decisions.rollout_id
                and transitions.transitioned_at <= decisions.decided_at
            order by transitions.transitioned_at desc, transitions.transition_id desc
            limit 1
        ) as rollout_stage_at_decision

    from decisions
    left join rollouts on rollouts.rollout_id = decisions.rollout_id

),

final as (

    select
        *,
        case
            when rollout_id is null or model_id is distinct from challenger_model_id
                then 'champion'
            when rollout_stage_at_decision in ('canary', 'full')
                then rollout_stage_at_decision
            when size_fraction < 1 then 'canary'
            else 'full'
        end as stage

    from staged

)

select * from final
