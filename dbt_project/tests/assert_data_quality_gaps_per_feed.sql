-- data_quality_daily keeps each feed's gaps apart: per instrument × day, its candle gap
-- columns count exactly the candles feed's gaps, and its mark-price and funding columns
-- exactly those feeds' open and unrecoverable gaps. Fails for every instrument-day that
-- differs (e.g. a funding gap counted as a candle gap).
with

expected as (

    select
        instrument,
        gap_date as day,
        count(*) filter (where feed = 'candles') as candle_gaps,
        count(*) filter (where feed = 'mark_price_candles' and is_open) as mark_price_open,
        count(*) filter (where feed = 'mark_price_candles' and status = 'unrecoverable')
            as mark_price_unrecoverable,
        count(*) filter (where feed = 'funding_rates' and is_open) as funding_open,
        count(*) filter (where feed = 'funding_rates' and status = 'unrecoverable')
            as funding_unrecoverable

    from {{ ref('stg_market__candle_gaps') }}
    group by 1, 2

),

reported as (

    select
        instrument,
        day,
        gaps_found + gaps_healing + gaps_healed + gaps_unrecoverable as candle_gaps,
        mark_price_gaps_open as mark_price_open,
        mark_price_gaps_unrecoverable as mark_price_unrecoverable,
        funding_gaps_open as funding_open,
        funding_gaps_unrecoverable as funding_unrecoverable

    from {{ ref('data_quality_daily') }}

)

select expected.*, reported.candle_gaps as reported_candle_gaps
from expected
left join reported
    on reported.instrument = expected.instrument and reported.day = expected.day
where reported.day is null
    or (expected.candle_gaps, expected.mark_price_open, expected.mark_price_unrecoverable,
        expected.funding_open, expected.funding_unrecoverable)
    is distinct from
    (reported.candle_gaps, reported.mark_price_open, reported.mark_price_unrecoverable,
     reported.funding_open, reported.funding_unrecoverable)
