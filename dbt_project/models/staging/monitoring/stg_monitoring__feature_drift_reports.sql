with

source as (

    select * from {{ source('monitoring', 'feature_drift_reports') }}

),

renamed as (

    select
        instrument,
        interval,
        day as drift_date,
        model_id,
        fingerprint as feature_fingerprint,
        feature,
        psi,
        ks_statistic,
        ks_pvalue,
        count as value_count,
        missing_share,
        ood_share,
        status,
        nullif(reasons, '') as reasons,
        reference_first_day,
        reference_last_day,
        computed_at

    from source

)

select * from renamed
