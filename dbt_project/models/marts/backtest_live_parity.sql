-- One row per instrument × interval × UTC day × live session × model: how the live (paper)
-- window agreed with its Nautilus replay (same model, recomputed features, same cost model).
-- The attribution columns split pnl_gap (live − backtest, quote currency) by cause and add up
-- to it; bars_* count the window's bars whose PnL difference was put on each cause.
with

reports as (

    select * from {{ ref('stg_parity__reports') }}

),

bars as (

    select * from {{ ref('stg_parity__report_bars') }}

),

per_report as (

    select
        report_id,
        count(*) filter (where agree is false) as disagreeing_bars,
        count(*) filter (where cause = 'feature_mismatch') as bars_feature_mismatch,
        count(*) filter (where cause = 'missed_bars') as bars_missed,
        count(*) filter (where cause = 'held_or_blocked') as bars_held_or_blocked,
        count(*) filter (where cause = 'unexplained') as bars_unexplained,
        min(bar_open_time) filter (where cause is not null) as first_divergent_bar

    from bars
    group by report_id

),

final as (

    select
        reports.report_id,
        reports.instrument,
        reports.interval,
        reports.parity_date,
        reports.session_id,
        reports.model_id,
        reports.mode,
        reports.first_bar_open_time,
        reports.last_bar_open_time,
        reports.window_bars,
        reports.live_decisions,
        reports.compared_bars,
        reports.agreeing_bars,
        reports.agreement_pct,
        reports.identical_bars,
        reports.identical_agreement_pct,
        reports.feature_mismatch_bars,
        reports.missed_bars,
        coalesce(per_report.disagreeing_bars, 0) as disagreeing_bars,
        reports.live_fills,
        reports.backtest_fills,
        reports.mean_fill_gap_bps,
        reports.max_abs_fill_gap_bps,
        reports.live_pnl,
        reports.backtest_pnl,
        reports.pnl_gap,
        (reports.attribution ->> 'slippage')::double precision as gap_slippage,
        (reports.attribution ->> 'latency')::double precision as gap_latency,
        (reports.attribution ->> 'missed_bars')::double precision as gap_missed_bars,
        (reports.attribution ->> 'feature_mismatch')::double precision as gap_feature_mismatch,
        (reports.attribution ->> 'held_or_blocked')::double precision as gap_held_or_blocked,
        (reports.attribution ->> 'funding')::double precision as gap_funding,
        (reports.attribution ->> 'unexplained')::double precision as gap_unexplained,
        coalesce(per_report.bars_feature_mismatch, 0) as bars_feature_mismatch,
        coalesce(per_report.bars_missed, 0) as bars_missed,
        coalesce(per_report.bars_held_or_blocked, 0) as bars_held_or_blocked,
        coalesce(per_report.bars_unexplained, 0) as bars_unexplained,
        per_report.first_divergent_bar,
        reports.ledger_residual,
        reports.order_quantity,
        reports.cost_model_fingerprint,
        reports.feature_fingerprint,
        reports.status,
        reports.computed_at

    from reports
    left join per_report on reports.report_id = per_report.report_id

)

select * from final
