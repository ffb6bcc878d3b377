-- Executions. side_sign is +1 for a buy and -1 for a sell, so side_sign × (fill − reference)
-- is positive when the fill was worse than the reference price (the slippage convention).
with

source as (

    select * from {{ source('live', 'fills') }}

),

renamed as (

    select
        fill_key,
        client_order_id,
        account_id,
        instrument,
        side,
        case side when 'BUY' then 1 when 'SELL' then -1 end as side_sign,
        quantity::double precision as quantity,
        price::double precision as price,
        fee::double precision as fee,
        filled_at,
        (filled_at at time zone 'UTC')::date as fill_date,
        source,
        recorded_at

    from source

)

select * from renamed
