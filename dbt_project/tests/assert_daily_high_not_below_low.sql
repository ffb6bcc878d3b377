-- A day's high below its low can only come from a corrupt bar (high < low) upstream.
select
    instrument,
    interval,
    bar_date,
    high,
    low

from {{ ref('daily_ohlc') }}
where high < low
