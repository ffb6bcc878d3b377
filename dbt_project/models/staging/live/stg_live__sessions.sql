with

source as (

    select * from {{ source('live', 'live_sessions') }}

),

renamed as (

    select
        session_id,
        mode,
        instrument,
        account_id,
        stream_url,
        started_at,
        stopped_at,
        stop_reason,
        heartbeat_at

    from source

)

select * from renamed
