-- Orders with quantities and prices as double precision (numeric in the source).
with

source as (

    select * from {{ source('live', 'orders') }}

),

renamed as (

    select
        client_order_id,
        account_id,
        session_id,
        decision_id,
        purpose,
        instrument,
        side,
        order_type,
        quantity::double precision as quantity,
        price::double precision as limit_price,
        reduce_only,
        state,
        exchange_order_id,
        executed_qty::double precision as executed_quantity,
        avg_price::double precision as average_price,
        created_at,
        updated_at

    from source

)

select * from renamed
