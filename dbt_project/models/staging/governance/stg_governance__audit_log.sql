-- The audit log without its hashes (`goldrl audit verify` checks the chain; analysts read who
-- did what). action is dotted: its first part is the family (promotion, rollout, risk, …).
with

source as (

    select * from {{ source('governance', 'audit_log') }}

),

renamed as (

    select
        entry_id,
        at as logged_at,
        actor,
        action,
        split_part(action, '.', 1) as action_family,
        subject,
        reason,
        before,
        after

    from source

)

select * from renamed
