-- Funding intervals per settlement, with where each came from; gap lifecycle for every feed.
--
-- BingX's funding history does not report the interval, so goldrl derives it per settlement
-- (never assumes 8 h) and records its provenance:
--   reported            the history row itself carried fundingIntervalHours
--   premium_index       a premium-index snapshot taken during the period said so (its
--                       nextFundingTime is this settlement)
--   contract            contract data valid at the settlement stated it
--   settlement_spacing  two consecutive equal spacings of settlements around it
-- A row whose interval could not be established keeps both columns NULL.
ALTER TABLE funding_rates
    ADD COLUMN funding_interval_source text
        CHECK (funding_interval_source IN
               ('reported', 'premium_index', 'contract', 'settlement_spacing'));
-- Intervals stored before provenance was recorded were stated by whoever wrote them (the
-- exchange's own field, an import): 'reported'. goldrl's writer keeps the two columns paired
-- (an interval without a source is read as 'reported'); a source never comes without hours.
UPDATE funding_rates SET funding_interval_source = 'reported'
    WHERE funding_interval_hours IS NOT NULL;
ALTER TABLE funding_rates
    ADD CONSTRAINT funding_interval_source_has_hours
        CHECK (funding_interval_source IS NULL OR funding_interval_hours IS NOT NULL);

-- candle_gaps now holds the gaps of every stored series: 1m candles, mark-price candles and
-- funding settlements (feed names the table the series lives in). reason says why the
-- missing rows were expected (operator-facing; detail keeps the lifecycle note).
ALTER TABLE candle_gaps ADD COLUMN feed text NOT NULL DEFAULT 'candles';
ALTER TABLE candle_gaps ADD COLUMN reason text;
DROP INDEX candle_gaps_open;
DROP INDEX candle_gaps_range;
CREATE UNIQUE INDEX candle_gaps_open ON candle_gaps (feed, instrument, interval, gap_start)
    WHERE status IN ('found', 'healing');
CREATE INDEX candle_gaps_range ON candle_gaps (feed, instrument, interval, gap_start, gap_end);
