-- One row per evaluation report, ranked. The global rank orders reports by the policy's excess
-- net PnL over buy-and-hold (comparable across windows, unlike raw PnL), then by lower
-- drawdown; market_rank does the same among reports on the same instrument × interval;
-- dataset_rank orders reports on the same dataset by raw policy net PnL. Remaining ties break
-- on report_id so ranks are deterministic and unique. is_current_champion marks reports whose
-- model is its market's champion now.
with

reports as (

    select * from {{ ref('stg_models__evaluation_reports') }}

),

models as (

    select * from {{ ref('stg_models__models') }}

),

decisions as (

    select
        report_id,
        bool_or(promoted) as promoted,
        count(*) as decision_count

    from {{ ref('stg_governance__promotion_decisions') }}
    group by report_id

),

champions as (

    select * from {{ ref('stg_governance__champions') }}

),

joined as (

    select
        reports.report_id,
        reports.model_id,
        models.algorithm,
        reports.instrument,
        reports.interval,
        reports.dataset_hash,
        reports.window_start,
        reports.window_end,
        reports.policy_net_pnl,
        reports.policy_max_drawdown,
        reports.policy_trade_count,
        reports.policy_win_rate,
        reports.policy_total_fees,
        reports.buy_and_hold_net_pnl,
        reports.flat_net_pnl,
        reports.policy_net_pnl - reports.buy_and_hold_net_pnl as excess_pnl_vs_buy_and_hold,
        reports.policy_net_pnl - reports.flat_net_pnl as excess_pnl_vs_flat,
        coalesce(decisions.promoted, false) as promoted,
        coalesce(decisions.decision_count, 0) as decision_count,
        champions.model_id is not null as is_current_champion,
        reports.created_at

    from reports
    left join models on reports.model_id = models.model_id
    left join decisions on reports.report_id = decisions.report_id
    left join champions
        on champions.instrument = reports.instrument
        and champions.interval = reports.interval
        and champions.model_id = reports.model_id

),

ranked as (

    select
        *,
        row_number() over (
            order by
                excess_pnl_vs_buy_and_hold desc nulls last,
                policy_max_drawdown asc nulls last,
                report_id
        ) as rank,
        row_number() over (
            partition by instrument, interval
            order by
                excess_pnl_vs_buy_and_hold desc nulls last,
                policy_max_drawdown asc nulls last,
                report_id
        ) as market_rank,
        row_number() over (
            partition by dataset_hash
            order by policy_net_pnl desc nulls last, policy_max_drawdown asc nulls last, report_id
        ) as dataset_rank

    from joined

)

select * from ranked
