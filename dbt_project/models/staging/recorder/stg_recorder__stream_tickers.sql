-- Recorded 24h ticker pushes (channel `ticker`), one per symbol and push time.
with

source as (

    select * from {{ source('recorder', 'stream_tickers') }}

),

renamed as (

    select
        symbol as instrument,
        'ticker'::text as channel,
        time as ticker_at,
        (time at time zone 'UTC')::date as ticker_date,
        last_price,
        open_price,
        high_price,
        low_price,
        volume,
        quote_volume,
        price_change_percent,
        bid_price,
        ask_price,
        recorded_at

    from source

)

select * from renamed
