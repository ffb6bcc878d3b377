with

source as (

    select * from {{ source('live', 'trading_accounts') }}

),

renamed as (

    select
        account_id,
        mode,
        venue,
        quote_asset,
        created_at

    from source

)

select * from renamed
