with

source as (

    select * from {{ source('governance', 'rollouts') }}

),

renamed as (

    select
        rollout_id,
        instrument,
        interval,
        challenger as challenger_model_id,
        stable_champion as stable_champion_model_id,
        decision_id,
        stage,
        stage in ('shadow', 'canary') as in_progress,
        canary_fraction,
        stage_started_at,
        started_at,
        ended_at

    from source

)

select * from renamed
