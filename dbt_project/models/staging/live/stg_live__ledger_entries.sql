-- Ledger entries, signed in the quote currency (+ credits the account: a fee is negative,
-- funding paid is negative). Fee and realised-PnL entries name their order in detail.
with

source as (

    select * from {{ source('live', 'ledger_entries') }}

),

renamed as (

    select
        entry_id,
        entry_key,
        account_id,
        instrument,
        kind,
        amount::double precision as amount,
        at as booked_at,
        (at at time zone 'UTC')::date as entry_date,
        detail ->> 'client_order_id' as client_order_id,
        detail

    from source

)

select * from renamed
