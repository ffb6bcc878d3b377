with

source as (

    select * from {{ source('live', 'live_decisions') }}

),

renamed as (

    select
        decision_id,
        session_id,
        instrument,
        bar_open_time,
        model_id,
        model_sha256,
        dataset_hash,
        feature_fingerprint,
        observation_sha256,
        action,
        target_position,
        price,
        position_after,
        cash_after,
        equity_after,
        account_id,
        outcome,
        client_order_id,
        rollout_id,
        size_fraction,
        decided_at,
        (bar_open_time at time zone 'UTC')::date as bar_date

    from source

)

select * from renamed
