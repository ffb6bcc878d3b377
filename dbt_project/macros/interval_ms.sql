{#- Milliseconds of a bar interval label (BingX kline intervals, as INTERVAL_MS in
    goldrl_dagster/lib/market/candles.py); null for an unknown label, which the
    not_null test on stg_market__candles.interval_ms reports. -#}
{% macro interval_ms(column) -%}
    case {{ column }}
        when '1m' then 60000
        when '3m' then 180000
        when '5m' then 300000
        when '15m' then 900000
        when '30m' then 1800000
        when '1h' then 3600000
        when '2h' then 7200000
        when '4h' then 14400000
        when '6h' then 21600000
        when '8h' then 28800000
        when '12h' then 43200000
        when '1d' then 86400000
        when '3d' then 259200000
        when '1w' then 604800000
    end::bigint
{%- endmacro %}
