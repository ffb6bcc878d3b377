-- Recorded book snapshots: depthN channels as pushed, and the incrDepth book after each
-- update (update_id = its lastUpdateId; null for depthN). book_key follows the table's unique
-- index (symbol, channel, time, coalesce(update_id, -1)). Levels stay jsonb, best first.
with

source as (

    select * from {{ source('recorder', 'stream_book') }}

),

renamed as (

    select
        symbol || '|' || channel || '|'
            || to_char(time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
            || '|' || coalesce(update_id, -1)::text as book_key,
        symbol as instrument,
        channel,
        time as book_at,
        (time at time zone 'UTC')::date as book_date,
        update_id,
        best_bid,
        best_ask,
        best_ask - best_bid as spread,
        jsonb_array_length(bids) as bid_levels,
        jsonb_array_length(asks) as ask_levels,
        bids,
        asks,
        recorded_at

    from source

)

select * from renamed
