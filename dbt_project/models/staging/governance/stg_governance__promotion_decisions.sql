with

source as (

    select * from {{ source('governance', 'promotion_decisions') }}

),

renamed as (

    select
        decision_id,
        model_id,
        report_id,
        instrument,
        interval,
        champion_report_id,
        trials,
        decided_by,
        previous_champion,
        promoted,
        case when jsonb_typeof(reasons) = 'array' then jsonb_array_length(reasons) end
            as reason_count,
        reasons,
        decided_at

    from source

)

select * from renamed
