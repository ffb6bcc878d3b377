with

source as (

    select * from {{ source('models', 'models') }}

),

renamed as (

    select
        model_id,
        algorithm,
        seed,
        dataset_hash,
        feature_fingerprint,
        cost_model_fingerprint,
        artifact_sha256,
        created_at

    from source

)

select * from renamed
