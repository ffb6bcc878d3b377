with

source as (

    select * from {{ source('parity', 'parity_reports') }}

),

renamed as (

    select
        report_id,
        instrument,
        interval,
        day as parity_date,
        session_id,
        model_id,
        mode,
        first_bar_open_time,
        last_bar_open_time,
        window_bars,
        live_decisions,
        compared_bars,
        agreeing_bars,
        identical_bars,
        identical_agreeing_bars,
        agreement_pct,
        identical_agreement_pct,
        feature_mismatch_bars,
        missed_bars,
        live_fills,
        backtest_fills,
        mean_fill_gap_bps,
        max_abs_fill_gap_bps,
        live_pnl,
        backtest_pnl,
        pnl_gap,
        ledger_residual,
        attribution,
        order_quantity,
        cost_model_fingerprint,
        feature_fingerprint,
        status,
        computed_at

    from source

)

select * from renamed
