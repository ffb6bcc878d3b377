with

source as (

    select * from {{ source('governance', 'learning_cycles') }}

),

renamed as (

    select
        cycle_id,
        instrument,
        interval,
        first_day,
        last_day,
        case when jsonb_typeof(candidates) = 'array' then jsonb_array_length(candidates) end
            as candidate_count,
        reason,
        started_at,
        judged_at,
        decision_id,
        outcome

    from source

)

select * from renamed
