-- Recorded trades (channel `trade`); trade_key = symbol|content_key|occurrence, the table's
-- primary key (pushes carry no trade id). side is the taker's: a buyer-maker trade is a sell.
with

source as (

    select * from {{ source('recorder', 'stream_trades') }}

),

renamed as (

    select
        symbol || '|' || content_key || '|' || occurrence::text as trade_key,
        symbol as instrument,
        'trade'::text as channel,
        time as traded_at,
        (time at time zone 'UTC')::date as trade_date,
        price,
        quantity,
        price * quantity as notional,
        is_buyer_maker,
        case when is_buyer_maker then 'sell' else 'buy' end as taker_side,
        fill_id,
        source,
        recorded_at

    from source

)

select * from renamed
