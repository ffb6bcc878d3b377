-- The current version of each contract: the row whose validity is still open.
with

source as (

    select * from {{ source('market', 'instruments') }}

),

current_rows as (

    select
        symbol,
        contract_id,
        asset,
        display_name,
        currency,
        price_precision,
        quantity_precision,
        contract_size,
        min_quantity,
        min_notional,
        maker_fee_rate,
        taker_fee_rate,
        max_long_leverage,
        max_short_leverage,
        status,
        launch_time,
        source,
        valid_from

    from source
    where valid_to is null

)

select * from current_rows
