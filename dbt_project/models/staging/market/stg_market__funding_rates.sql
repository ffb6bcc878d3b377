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
        -- reported, premium_index, contract or settlement_spacing; null with the hours when
        -- nothing established the interval (the futures features treat it as missing).
        funding_interval_source,
        funding_interval_hours is not null as interval_known,
        source,
        ingested_at

    from source

)

select * from renamed
