with

source as (

    select * from {{ source('market', 'funding_rates') }}

),

renamed as (

    select
        instrument,
        funding_time,
        (funding_time at time zone 'UTC')::date as funding_date,
        funding_rate,
        funding_interval_hours,
        source,
        ingested_at

    from source

)

select * from renamed
