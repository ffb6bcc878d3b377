-- Feature drift per UTC day × instrument × interval × model × feature (the champion judged on
-- the day's stored snapshots against its training reference), with the change from the
-- feature's previous judged day and how many of the last 7 days (this one included) alerted.
with

drift as (

    select * from {{ ref('stg_monitoring__feature_drift_reports') }}

),

champions as (

    select * from {{ ref('stg_governance__champions') }}

),

final as (

    select
        drift.drift_date,
        drift.instrument,
        drift.interval,
        drift.model_id,
        drift.feature,
        drift.feature_fingerprint,
        drift.status,
        drift.psi,
        drift.ks_statistic,
        drift.ks_pvalue,
        drift.ood_share,
        drift.missing_share,
        drift.value_count,
        drift.reasons,
        lag(drift.psi) over feature_days as previous_psi,
        drift.psi - lag(drift.psi) over feature_days as psi_change,
        count(*) filter (where drift.status = 'alert') over (
            partition by drift.instrument, drift.interval, drift.model_id, drift.feature
            order by drift.drift_date
            range between interval '6 days' preceding and current row
        ) as alert_days_last_7,
        champions.model_id is not null as is_current_champion,
        drift.reference_first_day,
        drift.reference_last_day,
        drift.computed_at

    from drift
    left join champions
        on champions.instrument = drift.instrument
        and champions.interval = drift.interval
        and champions.model_id = drift.model_id
    window feature_days as (
        partition by drift.instrument, drift.interval, drift.model_id, drift.feature
        order by drift.drift_date
    )

)

select * from final
