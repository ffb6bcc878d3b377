-- Completed asset-check executions with their severity and the partition of the
-- materialization they judged.
-- A multi-partition key (instrument × day) reads "YYYY-MM-DD|SYMBOL" (dimensions in name
-- order), so partition_date/partition_instrument are filled only for such keys.
-- Dagster's tables exist only once Dagster ran against this database: without them the model
-- is an empty relation of the same shape, so dbt builds on a database Dagster never touched.
{%- set executions = source('dagster', 'asset_check_executions') %}
{%- set events = source('dagster', 'event_logs') %}
{%- set present = false %}
{%- if execute %}
    {%- set present = adapter.get_relation(
        database=executions.database, schema=executions.schema,
        identifier=executions.identifier) is not none
        and adapter.get_relation(
        database=events.database, schema=events.schema,
        identifier=events.identifier) is not none %}
{%- endif %}

{%- if present %}
with

executions as (

    select * from {{ executions }}
    where execution_status in ('SUCCEEDED', 'FAILED')

),

events as (

    select id, partition from {{ events }}

),

renamed as (

    select
        executions.id as check_execution_id,
        -- asset_key is stored as a JSON list of its parts.
        array_to_string(
            array(select jsonb_array_elements_text(executions.asset_key::jsonb)), '/'
        ) as asset_key,
        executions.check_name,
        executions.run_id,
        executions.execution_status as status,
        -- ERROR or WARN, from the evaluation event (AssetCheckSeverity.ERROR → ERROR).
        replace(
            executions.evaluation_event::jsonb
                #>> '{dagster_event,event_specific_data,severity,__enum__}',
            'AssetCheckSeverity.', ''
        ) as severity,
        executions.evaluation_event_timestamp at time zone 'UTC' as evaluated_at,
        events.partition as partition_key

    from executions
    left join events on events.id = executions.materialization_event_storage_id

)

select
    *,
    case when partition_key ~ '^\d{4}-\d{2}-\d{2}\|'
        then split_part(partition_key, '|', 1)::date end as partition_date,
    case when partition_key ~ '^\d{4}-\d{2}-\d{2}\|'
        then split_part(partition_key, '|', 2) end as partition_instrument

from renamed
{%- else %}
select
    null::bigint as check_execution_id,
    null::text as asset_key,
    null::text as check_name,
    null::text as run_id,
    null::text as status,
    null::text as severity,
    null::timestamptz as evaluated_at,
    null::text as partition_key,
    null::date as partition_date,
    null::text as partition_instrument
where false
{%- endif %}
