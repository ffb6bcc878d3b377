with

source as (

    select * from {{ source('parity', 'parity_report_bars') }}

)

select
    report_id,
    bar_open_time,
    decision_id,
    live_status,
    outcome,
    live_position_before,
    live_target,
    backtest_target,
    backtest_path_target,
    agree,
    feature_match,
    decision_price,
    bar_close,
    live_fill_quantity,
    live_fill_price,
    backtest_fill_quantity,
    backtest_fill_price,
    fill_gap_bps,
    live_pnl,
    backtest_pnl,
    live_equity,
    backtest_equity,
    cause

from source
