-- Slippage is positive when a fill cost money against its decision price: a buy above it or a
-- sell below it. Recomputed here from the staged fills, orders and decisions (not from the
-- mart's own columns), so a flipped sign or a wrong join in fill_slippage fails this test.
with

expected as (

    select
        fills.fill_key,
        case
            when fills.side = 'BUY' then fills.price - decisions.price
            else decisions.price - fills.price
        end / decisions.price * 10000 as expected_bps

    from {{ ref('stg_live__fills') }} as fills
    inner join {{ ref('stg_live__orders') }} as orders
        on orders.client_order_id = fills.client_order_id
    inner join {{ ref('stg_live__decisions') }} as decisions
        on decisions.decision_id = orders.decision_id
    where orders.purpose = 'decision'

)

select
    expected.fill_key,
    expected.expected_bps,
    mart.slippage_bps

from expected
left join {{ ref('fill_slippage') }} as mart on mart.fill_key = expected.fill_key
where mart.slippage_bps is null
    or abs(mart.slippage_bps - expected.expected_bps) > 1e-6
