-- Recorded best bid/ask pushes (channel `bookTicker`). book_ticker_key follows the table's
-- unique index (symbol, time, coalesce(update_id, -1)).
with

source as (

    select * from {{ source('recorder', 'stream_book_tickers') }}

),

renamed as (

    select
        symbol || '|'
            || to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
            || '|' || coalesce(update_id, -1)::text as book_ticker_key,
        symbol as instrument,
        'bookTicker'::text as channel,
        time as book_ticker_at,
        (time at time zone 'UTC')::date as book_ticker_date,
        update_id,
        bid_price,
        bid_qty,
        ask_price,
        ask_qty,
        ask_price - bid_price as spread,
        recorded_at

    from source

)

select * from renamed
