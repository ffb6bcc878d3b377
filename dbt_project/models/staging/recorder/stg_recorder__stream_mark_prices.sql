-- Recorded mark-price pushes (channel `markPrice`), one per symbol and push time.
with

source as (

    select * from {{ source('recorder', 'stream_mark_prices') }}

),

renamed as (

    select
        symbol as instrument,
        'markPrice'::text as channel,
        time as mark_at,
        (time at time zone 'UTC')::date as mark_date,
        mark_price,
        recorded_at

    from source

)

select * from renamed
