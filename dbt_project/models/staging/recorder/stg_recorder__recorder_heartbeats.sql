-- One row per recorder process (recorder_id) with its latest beat. is_running: not stopped
-- cleanly (a crashed recorder stays "running" with an old beat: seconds_since_beat says so,
-- measured when the view is read). The counters come from stats (jsonb, the recorder's own).
with

source as (

    select * from {{ source('recorder', 'recorder_heartbeats') }}

),

renamed as (

    select
        recorder_id,
        host,
        pid,
        instruments,
        started_at,
        beat_at,
        heartbeat_seconds,
        stopped_at,
        stopped_at is null as is_running,
        extract(epoch from now() - beat_at)::double precision as seconds_since_beat,
        (stats ->> 'reconnects')::bigint as reconnects,
        (stats ->> 'task_failures')::bigint as task_failures,
        (stats ->> 'write_failures')::bigint as write_failures,
        (
            select sum(value::bigint)::bigint
            from jsonb_each_text(
                case when jsonb_typeof(stats -> 'resyncs') = 'object'
                    then stats -> 'resyncs' else '{}'::jsonb end
            )
        ) as resyncs,
        stats

    from source

)

select * from renamed
