-- Data-quality findings; interval is null when the finding concerns no particular interval
-- (stored as '' so the source's unique key stays total).
with

source as (

    select * from {{ source('market', 'data_quality_findings') }}

),

renamed as (

    select
        id as finding_id,
        kind,
        instrument,
        nullif(interval, '') as interval,
        at as found_for,
        (at at time zone 'UTC')::date as finding_date,
        severity,
        detail,
        found_at

    from source

)

select * from renamed
