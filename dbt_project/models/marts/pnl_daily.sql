-- PnL per UTC day × account × instrument × model × rollout stage.
--   realised_pnl   ledger realised PnL of fills on that day (before fees)
--   fees_paid      fees of those fills (positive = paid)
--   funding        funding settlements (signed as booked: positive = received);
--                  funding_paid is its negation (positive = paid)
--   net_realised_pnl = realised_pnl − fees_paid + funding (= the day's ledger amounts)
--   unrealised_pnl the open position's mark-to-market after the day's last decision
--                  (equity_after − cash_after at that bar's close), on the row of the model
--                  and stage that took that decision; null on rows without one.
-- Fill entries belong to the model and stage of the decision whose order filled; a funding
-- settlement belongs to the account's latest decision on the instrument before it (the model
-- holding the position). Entries of orders without a decision (flatten, operator) and funding
-- before any decision are reported under model_id = stage = '(unattributed)'.
with

entries as (

    select * from {{ ref('stg_live__ledger_entries') }}
    where kind in ('realised_pnl', 'fee', 'funding')

),

orders as (

    select * from {{ ref('stg_live__orders') }}

),

decisions as (

    select * from {{ ref('int_live__decision_stages') }}
    where account_id is not null

),

accounts as (

    select * from {{ ref('stg_live__trading_accounts') }}

),

fill_entries as (

    select
        entries.entry_date as pnl_date,
        entries.account_id,
        entries.instrument,
        decisions.model_id,
        decisions.stage,
        entries.kind,
        entries.amount

    from entries
    left join orders on orders.client_order_id = entries.client_order_id
    left join decisions on decisions.decision_id = orders.decision_id
    where entries.kind in ('realised_pnl', 'fee')

),

funding_entries as (

    select
        entries.entry_date as pnl_date,
        entries.account_id,
        entries.instrument,
        holder.model_id,
        holder.stage,
        entries.kind,
        entries.amount

    from entries
    left join lateral (
        select decisions.model_id, decisions.stage
        from decisions
        where decisions.account_id = entries.account_id
            and decisions.instrument = entries.instrument
            and decisions.decided_at <= entries.booked_at
        order by decisions.decided_at desc, decisions.decision_id desc
        limit 1
    ) as holder on true
    where entries.kind = 'funding'

),

booked as (

    select
        pnl_date,
        account_id,
        instrument,
        coalesce(model_id, '(unattributed)') as model_id,
        coalesce(stage, '(unattributed)') as stage,
        sum(amount) filter (where kind = 'realised_pnl') as realised_pnl,
        -sum(amount) filter (where kind = 'fee') as fees_paid,
        sum(amount) filter (where kind = 'funding') as funding,
        count(*) as entry_count

    from (
        select * from fill_entries
        union all
        select * from funding_entries
    ) as attributed
    group by 1, 2, 3, 4, 5

),

last_decisions as (

    select
        bar_date as pnl_date,
        account_id,
        instrument,
        model_id,
        stage,
        equity_after - cash_after as unrealised_pnl,
        position_after as position_end_of_day

    from (
        select
            *,
            row_number() over (
                partition by account_id, instrument, bar_date
                order by bar_open_time desc, decision_id desc
            ) as recency
        from decisions
    ) as ranked
    where recency = 1

),

combined as (

    select
        coalesce(booked.pnl_date, last_decisions.pnl_date) as pnl_date,
        coalesce(booked.account_id, last_decisions.account_id) as account_id,
        coalesce(booked.instrument, last_decisions.instrument) as instrument,
        coalesce(booked.model_id, last_decisions.model_id) as model_id,
        coalesce(booked.stage, last_decisions.stage) as stage,
        coalesce(booked.realised_pnl, 0) as realised_pnl,
        coalesce(booked.fees_paid, 0) as fees_paid,
        coalesce(booked.funding, 0) as funding,
        coalesce(booked.entry_count, 0) as entry_count,
        last_decisions.unrealised_pnl,
        last_decisions.position_end_of_day

    from booked
    full outer join last_decisions
        on booked.pnl_date = last_decisions.pnl_date
        and booked.account_id = last_decisions.account_id
        and booked.instrument = last_decisions.instrument
        and booked.model_id = last_decisions.model_id
        and booked.stage = last_decisions.stage

),

final as (

    select
        combined.pnl_date,
        combined.account_id,
        accounts.mode,
        combined.instrument,
        combined.model_id,
        combined.stage,
        combined.realised_pnl,
        combined.fees_paid,
        combined.funding,
        -combined.funding as funding_paid,
        combined.realised_pnl - combined.fees_paid + combined.funding as net_realised_pnl,
        combined.unrealised_pnl,
        combined.position_end_of_day,
        combined.entry_count

    from combined
    left join accounts on accounts.account_id = combined.account_id

)

select * from final
