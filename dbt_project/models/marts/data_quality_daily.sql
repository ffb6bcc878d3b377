-- Data coverage and quality per instrument × UTC day: stored 1m bars against a full day,
-- the gaps found in the day by feed (a gap counts on the day of its first missing row): the
-- 1m candle series by state (gaps_*: feed = 'candles' only, every interval), and the open
-- and unrecoverable gaps of the mark-price candles (mark_price_gaps_*) and of the funding
-- settlements (funding_gaps_*); the data-quality findings by severity, and the latest outcome
-- of each asset check on the instrument-day partition. A day appears when any of these has a
-- row for it.
-- quality_status: 'error' when a check of ERROR severity failed, a finding is an error or a
-- gap of any feed is unrecoverable; else 'warn' when bars are missing, a gap of any feed is
-- open, a finding warns or a WARN-severity check failed; else 'ok'.
-- A day still in progress shows as incomplete (coverage below 1) until it is over.
with

candles as (

    select instrument, bar_date as day, count(*) as bars_stored
    from {{ ref('stg_market__candles') }}
    where interval = '1m'
    group by 1, 2

),

gaps as (

    select
        instrument,
        gap_date as day,
        count(*) filter (where status = 'found') as gaps_found,
        count(*) filter (where status = 'healing') as gaps_healing,
        count(*) filter (where status = 'healed') as gaps_healed,
        count(*) filter (where status = 'unrecoverable') as gaps_unrecoverable,
        coalesce(sum(missing_bars) filter (where is_open), 0) as open_gap_missing_bars

    from {{ ref('stg_market__candle_gaps') }}
    where feed = 'candles'
    group by 1, 2

),

-- The other feeds' gaps (mark-price candles, funding settlements), apart from the candles'.
feed_gaps as (

    select
        instrument,
        gap_date as day,
        count(*) filter (where feed = 'mark_price_candles' and is_open)
            as mark_price_gaps_open,
        count(*) filter (where feed = 'mark_price_candles' and status = 'unrecoverable')
            as mark_price_gaps_unrecoverable,
        coalesce(sum(missing_bars) filter (where feed = 'mark_price_candles' and is_open), 0)
            as mark_price_open_missing_bars,
        count(*) filter (where feed = 'funding_rates' and is_open) as funding_gaps_open,
        count(*) filter (where feed = 'funding_rates' and status = 'unrecoverable')
            as funding_gaps_unrecoverable,
        coalesce(sum(missing_bars) filter (where feed = 'funding_rates' and is_open), 0)
            as funding_open_missing_settlements

    from {{ ref('stg_market__candle_gaps') }}
    where feed <> 'candles'
    group by 1, 2

),

findings as (

    select
        instrument,
        finding_date as day,
        count(*) filter (where severity = 'info') as findings_info,
        count(*) filter (where severity = 'warning') as findings_warning,
        count(*) filter (where severity = 'error') as findings_error

    from {{ ref('stg_market__quality_findings') }}
    group by 1, 2

),

latest_checks as (

    select *
    from (
        select
            *,
            row_number() over (
                partition by asset_key, check_name, partition_key
                order by evaluated_at desc, check_execution_id desc
            ) as recency
        from {{ ref('stg_dagster__check_executions') }}
        where partition_date is not null
    ) as ranked
    where recency = 1

),

checks as (

    select
        partition_instrument as instrument,
        partition_date as day,
        count(*) filter (where status = 'SUCCEEDED') as checks_passed,
        count(*) filter (where status = 'FAILED') as checks_failed,
        count(*) filter (where status = 'FAILED' and severity is distinct from 'WARN')
            as checks_failed_error,
        string_agg(asset_key || ':' || check_name, ', ' order by asset_key, check_name)
            filter (where status = 'FAILED') as failed_checks

    from latest_checks
    group by 1, 2

),

days as (

    select instrument, day from candles
    union
    select instrument, day from gaps
    union
    select instrument, day from feed_gaps
    union
    select instrument, day from findings
    union
    select instrument, day from checks

),

joined as (

    select
        days.instrument,
        days.day,
        coalesce(candles.bars_stored, 0) as bars_stored,
        1440 as bars_expected,
        coalesce(gaps.gaps_found, 0) as gaps_found,
        coalesce(gaps.gaps_healing, 0) as gaps_healing,
        coalesce(gaps.gaps_healed, 0) as gaps_healed,
        coalesce(gaps.gaps_unrecoverable, 0) as gaps_unrecoverable,
        coalesce(gaps.open_gap_missing_bars, 0) as open_gap_missing_bars,
        coalesce(feed_gaps.mark_price_gaps_open, 0) as mark_price_gaps_open,
        coalesce(feed_gaps.mark_price_gaps_unrecoverable, 0) as mark_price_gaps_unrecoverable,
        coalesce(feed_gaps.mark_price_open_missing_bars, 0) as mark_price_open_missing_bars,
        coalesce(feed_gaps.funding_gaps_open, 0) as funding_gaps_open,
        coalesce(feed_gaps.funding_gaps_unrecoverable, 0) as funding_gaps_unrecoverable,
        coalesce(feed_gaps.funding_open_missing_settlements, 0)
            as funding_open_missing_settlements,
        coalesce(findings.findings_info, 0) as findings_info,
        coalesce(findings.findings_warning, 0) as findings_warning,
        coalesce(findings.findings_error, 0) as findings_error,
        coalesce(checks.checks_passed, 0) as checks_passed,
        coalesce(checks.checks_failed, 0) as checks_failed,
        coalesce(checks.checks_failed_error, 0) as checks_failed_error,
        checks.failed_checks

    from days
    left join candles on candles.instrument = days.instrument and candles.day = days.day
    left join gaps on gaps.instrument = days.instrument and gaps.day = days.day
    left join feed_gaps
        on feed_gaps.instrument = days.instrument and feed_gaps.day = days.day
    left join findings on findings.instrument = days.instrument and findings.day = days.day
    left join checks on checks.instrument = days.instrument and checks.day = days.day

),

final as (

    select
        instrument,
        day,
        bars_stored,
        bars_expected,
        bars_expected - bars_stored as bars_missing,
        bars_stored::double precision / bars_expected as coverage_ratio,
        gaps_found,
        gaps_healing,
        gaps_healed,
        gaps_unrecoverable,
        gaps_found + gaps_healing as gaps_open,
        open_gap_missing_bars,
        mark_price_gaps_open,
        mark_price_gaps_unrecoverable,
        mark_price_open_missing_bars,
        funding_gaps_open,
        funding_gaps_unrecoverable,
        funding_open_missing_settlements,
        findings_info,
        findings_warning,
        findings_error,
        checks_passed,
        checks_failed,
        checks_failed_error,
        failed_checks,
        case
            when checks_failed_error > 0 or findings_error > 0 or gaps_unrecoverable > 0
                or mark_price_gaps_unrecoverable > 0 or funding_gaps_unrecoverable > 0
                then 'error'
            when bars_stored < bars_expected or gaps_found + gaps_healing > 0
                or mark_price_gaps_open > 0 or funding_gaps_open > 0
                or findings_warning > 0 or checks_failed > 0 then 'warn'
            else 'ok'
        end as quality_status

    from joined

)

select * from final
