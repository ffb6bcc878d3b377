-- Fill quality per UTC fill day × instrument × model × rollout stage, over the fills of
-- decision orders (the only fills with a decision price). Positive slippage = cost.
-- vwap_slippage_bps weights each fill by its notional; mean_slippage_bps weights fills equally.
with

fills as (

    select * from {{ ref('fill_slippage') }}
    where decision_id is not null

),

final as (

    select
        fill_date,
        instrument,
        model_id,
        stage,
        count(*) as fill_count,
        count(distinct client_order_id) as order_count,
        sum(quantity) as quantity,
        sum(notional) as notional,
        sum(fee) as fees,
        avg(slippage_bps) as mean_slippage_bps,
        sum(slippage_bps * notional) / nullif(sum(notional), 0) as vwap_slippage_bps,
        min(slippage_bps) as min_slippage_bps,
        max(slippage_bps) as max_slippage_bps,
        sum(slippage_cost) as slippage_cost,
        avg(decision_to_fill_ms) as mean_decision_to_fill_ms

    from fills
    group by fill_date, instrument, model_id, stage

)

select * from final
