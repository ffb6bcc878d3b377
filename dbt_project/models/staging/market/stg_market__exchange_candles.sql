-- The exchange's own higher-interval bars (never 1m), labelled apart from the canonical
-- candles aggregated from 1m; the UTC day of the bar's open as for stg_market__candles.
with

source as (

    select * from {{ source('market', 'exchange_candles') }}

),

renamed as (

    select
        instrument,
        interval,
        {{ interval_ms('interval') }} as interval_ms,
        open_time,
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
