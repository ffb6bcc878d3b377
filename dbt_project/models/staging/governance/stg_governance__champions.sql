with

source as (

    select * from {{ source('governance', 'champions') }}

),

renamed as (

    select
        instrument,
        interval,
        model_id,
        decision_id,
        updated_at

    from source

)

select * from renamed
