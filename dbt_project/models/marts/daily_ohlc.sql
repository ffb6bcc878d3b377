-- Daily OHLCV per instrument and bar interval (UTC days), with how complete each day is.
-- expected_bars is the number of bars a full day holds; intervals of a day or longer expect
-- one bar on a day that has any, so their coverage is 1 whenever a bar exists.
with

candles as (

    select * from {{ ref('stg_market__candles') }}

),

daily as (

    select
        instrument,
        interval,
        bar_date,
        max(interval_ms) as interval_ms,
        (array_agg(open order by open_time))[1] as open,
        max(high) as high,
        min(low) as low,
        (array_agg(close order by open_time desc))[1] as close,
        sum(volume) as volume,
        count(*) as bar_count,
        min(open_time) as first_open_time,
        max(open_time) as last_open_time

    from candles
    group by instrument, interval, bar_date

),

final as (

    select
        instrument,
        interval,
        bar_date,
        open,
        high,
        low,
        close,
        volume,
        bar_count,
        greatest(86400000 / interval_ms, 1) as expected_bars,
        bar_count::double precision / greatest(86400000 / interval_ms, 1) as coverage_ratio,
        first_open_time,
        last_open_time

    from daily

)

select * from final
