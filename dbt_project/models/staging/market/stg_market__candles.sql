with

source as (

    select * from {{ source('market', 'candles') }}

),

renamed as (

    select
        instrument,
        interval,
        {{ interval_ms('interval') }} as interval_ms,
        open_time,
        -- The UTC calendar day of the bar's open, independent of the session time zone.
        (open_time at time zone 'UTC')::date as bar_date,
        open,
        high,
        low,
        close,
        volume,
        source,
        ingested_at

    from source

)

select * from renamed
