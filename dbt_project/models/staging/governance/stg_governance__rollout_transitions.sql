with

source as (

    select * from {{ source('governance', 'rollout_transitions') }}

),

renamed as (

    select
        transition_id,
        rollout_id,
        from_stage,
        to_stage,
        reason,
        evidence,
        decided_by,
        at as transitioned_at

    from source

)

select * from renamed
