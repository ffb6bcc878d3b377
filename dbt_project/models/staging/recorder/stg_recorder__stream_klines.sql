-- Final klines recorded from the stream; channel is the one they came on (kline_<interval>).
with

source as (

    select * from {{ source('recorder', 'stream_klines') }}

),

renamed as (

    select
        symbol as instrument,
        interval,
        'kline_' || interval as channel,
        {{ interval_ms('interval') }} as interval_ms,
        open_time,
        (open_time at time zone 'UTC')::date as bar_date,
        open,
        high,
        low,
        close,
        volume,
        recorded_at

    from source

)

select * from renamed
