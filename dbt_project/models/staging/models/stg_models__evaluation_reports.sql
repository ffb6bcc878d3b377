-- One row per evaluation report with the policy's and the baselines' metrics as columns.
-- policy_metrics:   {"net_pnl", "max_drawdown", "trade_count", "win_rate", "total_fees", ...}
-- baseline_metrics: {"flat": {...same keys...}, "buy_and_hold": {...same keys...}}
with

source as (

    select * from {{ source('models', 'evaluation_reports') }}

),

flattened as (

    select
        report_id,
        model_id,
        dataset_hash,
        instrument,
        interval,
        window_start,
        window_end,
        trades_sha256,
        created_at,

        (policy_metrics ->> 'net_pnl')::double precision as policy_net_pnl,
        (policy_metrics ->> 'max_drawdown')::double precision as policy_max_drawdown,
        (policy_metrics ->> 'trade_count')::integer as policy_trade_count,
        (policy_metrics ->> 'win_rate')::double precision as policy_win_rate,
        (policy_metrics ->> 'total_fees')::double precision as policy_total_fees,

        (baseline_metrics -> 'buy_and_hold' ->> 'net_pnl')::double precision
            as buy_and_hold_net_pnl,
        (baseline_metrics -> 'buy_and_hold' ->> 'max_drawdown')::double precision
            as buy_and_hold_max_drawdown,
        (baseline_metrics -> 'flat' ->> 'net_pnl')::double precision as flat_net_pnl,
        (baseline_metrics -> 'flat' ->> 'max_drawdown')::double precision as flat_max_drawdown

    from source

)

select * from flattened
