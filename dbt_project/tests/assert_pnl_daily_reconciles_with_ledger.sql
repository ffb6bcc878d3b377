-- pnl_daily loses or double-counts nothing: per account and instrument, its realised PnL,
-- fees and funding add up to the ledger's entries of those kinds.
with

ledger as (

    select
        account_id,
        instrument,
        coalesce(sum(amount) filter (where kind = 'realised_pnl'), 0) as realised_pnl,
        coalesce(-sum(amount) filter (where kind = 'fee'), 0) as fees_paid,
        coalesce(sum(amount) filter (where kind = 'funding'), 0) as funding

    from {{ ref('stg_live__ledger_entries') }}
    where kind in ('realised_pnl', 'fee', 'funding')
    group by 1, 2

),

mart as (

    select
        account_id,
        instrument,
        sum(realised_pnl) as realised_pnl,
        sum(fees_paid) as fees_paid,
        sum(funding) as funding

    from {{ ref('pnl_daily') }}
    group by 1, 2

)

select
    coalesce(ledger.account_id, mart.account_id) as account_id,
    coalesce(ledger.instrument, mart.instrument) as instrument,
    ledger.realised_pnl as ledger_realised_pnl,
    mart.realised_pnl as mart_realised_pnl,
    ledger.fees_paid as ledger_fees_paid,
    mart.fees_paid as mart_fees_paid,
    ledger.funding as ledger_funding,
    mart.funding as mart_funding

from ledger
full outer join mart
    on mart.account_id = ledger.account_id and mart.instrument = ledger.instrument
where abs(coalesce(ledger.realised_pnl, 0) - coalesce(mart.realised_pnl, 0)) > 1e-6
    or abs(coalesce(ledger.fees_paid, 0) - coalesce(mart.fees_paid, 0)) > 1e-6
    or abs(coalesce(ledger.funding, 0) - coalesce(mart.funding, 0)) > 1e-6
