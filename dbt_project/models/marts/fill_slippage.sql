-- One row per fill, with the decision it executed and its slippage against the decision price
-- (the close of the bar the decision was taken on):
--   slippage_bps  = side_sign × (fill price − decision price) / decision price × 10 000
--   slippage_cost = side_sign × (fill price − decision price) × quantity   (quote currency)
-- side_sign is +1 for a buy, −1 for a sell, so positive = cost (bought above / sold below the
-- decision price), negative = price improvement. Same convention as lib/storage/fill_quality.
-- Fills of flatten/operator orders have no decision: their decision columns are null.
with

fills as (

    select * from {{ ref('stg_live__fills') }}

),

orders as (

    select * from {{ ref('stg_live__orders') }}

),

decisions as (

    select * from {{ ref('int_live__decision_stages') }}

),

sessions as (

    select * from {{ ref('stg_live__sessions') }}

),

joined as (

    select
        fills.fill_key,
        fills.client_order_id,
        fills.account_id,
        orders.session_id,
        sessions.mode,
        orders.purpose,
        orders.decision_id,
        fills.instrument,
        fills.side,
        fills.side_sign,
        fills.quantity,
        fills.price as fill_price,
        fills.quantity * fills.price as notional,
        fills.fee,
        fills.filled_at,
        fills.fill_date,
        fills.source as fill_source,
        decisions.model_id,
        decisions.rollout_id,
        decisions.stage,
        decisions.size_fraction,
        decisions.bar_open_time as decision_bar_open_time,
        decisions.decided_at,
        decisions.price as decision_price

    from fills
    left join orders on orders.client_order_id = fills.client_order_id
    left join decisions on decisions.decision_id = orders.decision_id
    left join sessions on sessions.session_id = orders.session_id

),

final as (

    select
        *,
        side_sign * (fill_price - decision_price) / decision_price * 10000 as slippage_bps,
        side_sign * (fill_price - decision_price) * quantity as slippage_cost,
        (extract(epoch from filled_at - decided_at) * 1000)::double precision
            as decision_to_fill_ms

    from joined

)

select * from final
