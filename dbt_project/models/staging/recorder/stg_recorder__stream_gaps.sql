-- What the recorder could not get back, one row per gap (gap_id): the channel's stretch from
-- the last record before it to the first after it (gap_end >= gap_start; a sequence_skip is
-- the instant of the resync, zero long). Attributed to the UTC day of gap_start.
with

source as (

    select * from {{ source('recorder', 'stream_gaps') }}

),

renamed as (

    select
        gap_id,
        symbol as instrument,
        channel,
        gap_start,
        gap_end,
        (gap_start at time zone 'UTC')::date as gap_date,
        extract(epoch from gap_end - gap_start)::double precision as gap_seconds,
        reason,
        reason = 'sequence_skip' as is_resync,
        detail,
        recorded_at

    from source

)

select * from renamed
