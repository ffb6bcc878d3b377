-- One row per gap in a stored series: feed names the table the series lives in (candles,
-- mark_price_candles, funding_rates), reason why the missing rows were expected. gap_end is
-- the open time after the last missing bar (exclusive). The gap is attributed to the UTC day
-- of its first missing bar.
with

source as (

    select * from {{ source('market', 'candle_gaps') }}

),

renamed as (

    select
        gap_id,
        feed,
        instrument,
        interval,
        gap_start,
        gap_end,
        (gap_start at time zone 'UTC')::date as gap_date,
        missing_bars,
        reason,
        status,
        status in ('found', 'healing') as is_open,
        attempts,
        first_found_at,
        updated_at,
        detail

    from source

)

select * from renamed
