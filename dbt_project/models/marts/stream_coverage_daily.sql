-- What the streaming recorder stored per UTC day × instrument × channel: the records of the
-- channel's table (trades from REST refills counted apart), the first and last record, the
-- gaps it could not recover by reason, and the incrDepth resyncs.
-- A gap counts on the UTC day it starts (gaps_*); its duration is split over the UTC days it
-- spans (gap_seconds_*), so a day's gap seconds never exceed the day (unless gaps overlap).
-- resyncs = sequence_skip gaps: each skipped incrDepth id resynced the book once.
-- A row exists when the channel recorded anything or lost any time on the day.
-- Channels: trade, kline_<interval>, the depth channel (e.g. depth20@100ms), incrDepth,
-- ticker, markPrice, bookTicker.
with

records as (

    select
        instrument, channel, trade_date as day, count(*) as records,
        count(*) filter (where source = 'rest') as records_refilled,
        min(traded_at) as first_record_at, max(traded_at) as last_record_at
    from {{ ref('stg_recorder__stream_trades') }}
    group by 1, 2, 3

    union all

    select
        instrument, channel, bar_date, count(*), 0, min(open_time), max(open_time)
    from {{ ref('stg_recorder__stream_klines') }}
    group by 1, 2, 3

    union all

    select instrument, channel, book_date, count(*), 0, min(book_at), max(book_at)
    from {{ ref('stg_recorder__stream_book') }}
    group by 1, 2, 3

    union all

    select instrument, channel, ticker_date, count(*), 0, min(ticker_at), max(ticker_at)
    from {{ ref('stg_recorder__stream_tickers') }}
    group by 1, 2, 3

    union all

    select instrument, channel, mark_date, count(*), 0, min(mark_at), max(mark_at)
    from {{ ref('stg_recorder__stream_mark_prices') }}
    group by 1, 2, 3

    union all

    select
        instrument, channel, book_ticker_date, count(*), 0, min(book_ticker_at),
        max(book_ticker_at)
    from {{ ref('stg_recorder__stream_book_tickers') }}
    group by 1, 2, 3

),

gap_counts as (

    select
        instrument,
        channel,
        gap_date as day,
        count(*) as gaps,
        count(*) filter (where reason = 'disconnect') as gaps_disconnect,
        count(*) filter (where reason = 'sequence_skip') as gaps_sequence_skip,
        count(*) filter (where reason = 'rest_window_exceeded') as gaps_rest_window_exceeded

    from {{ ref('stg_recorder__stream_gaps') }}
    group by 1, 2, 3

),

-- Every UTC day a gap touches, with the part of the gap inside it.
gap_days as (

    select
        gaps.instrument,
        gaps.channel,
        gaps.reason,
        gaps.gap_date,
        spanned.day_start::date as day,
        extract(epoch from
            least(gaps.gap_end, (spanned.day_start + interval '1 day') at time zone 'UTC')
            - greatest(gaps.gap_start, spanned.day_start at time zone 'UTC')
        )::double precision as seconds

    from {{ ref('stg_recorder__stream_gaps') }} as gaps
    cross join lateral generate_series(
        gaps.gap_date::timestamp,
        (gaps.gap_end at time zone 'UTC')::date::timestamp,
        interval '1 day'
    ) as spanned (day_start)

),

gap_durations as (

    select
        instrument,
        channel,
        day,
        sum(seconds) as gap_seconds,
        coalesce(sum(seconds) filter (where reason = 'disconnect'), 0)
            as gap_seconds_disconnect,
        coalesce(sum(seconds) filter (where reason = 'sequence_skip'), 0)
            as gap_seconds_sequence_skip,
        coalesce(sum(seconds) filter (where reason = 'rest_window_exceeded'), 0)
            as gap_seconds_rest_window_exceeded

    from gap_days
    -- A gap ending exactly at midnight does not reach into the next day.
    where seconds > 0 or day = gap_date
    group by 1, 2, 3

),

keys as (

    select instrument, channel, day from records
    union
    select instrument, channel, day from gap_durations

),

final as (

    select
        keys.day,
        keys.instrument,
        keys.channel,
        case
            when keys.channel = 'trade' then 'stream_trades'
            when keys.channel like 'kline\_%' then 'stream_klines'
            when keys.channel = 'incrDepth' or keys.channel like 'depth%' then 'stream_book'
            when keys.channel = 'ticker' then 'stream_tickers'
            when keys.channel = 'markPrice' then 'stream_mark_prices'
            when keys.channel = 'bookTicker' then 'stream_book_tickers'
        end as source_table,
        coalesce(records.records, 0) as records,
        coalesce(records.records_refilled, 0) as records_refilled,
        records.first_record_at,
        records.last_record_at,
        coalesce(gap_counts.gaps, 0) as gaps,
        coalesce(gap_counts.gaps_disconnect, 0) as gaps_disconnect,
        coalesce(gap_counts.gaps_sequence_skip, 0) as gaps_sequence_skip,
        coalesce(gap_counts.gaps_rest_window_exceeded, 0) as gaps_rest_window_exceeded,
        coalesce(gap_durations.gap_seconds, 0) as gap_seconds,
        coalesce(gap_durations.gap_seconds_disconnect, 0) as gap_seconds_disconnect,
        coalesce(gap_durations.gap_seconds_sequence_skip, 0) as gap_seconds_sequence_skip,
        coalesce(gap_durations.gap_seconds_rest_window_exceeded, 0)
            as gap_seconds_rest_window_exceeded,
        coalesce(gap_counts.gaps_sequence_skip, 0) as resyncs

    from keys
    left join records
        on records.instrument = keys.instrument and records.channel = keys.channel
        and records.day = keys.day
    left join gap_counts
        on gap_counts.instrument = keys.instrument and gap_counts.channel = keys.channel
        and gap_counts.day = keys.day
    left join gap_durations
        on gap_durations.instrument = keys.instrument and gap_durations.channel = keys.channel
        and gap_durations.day = keys.day

)

select * from final
