-- Frozen: the invalidation threshold of each rollup tier (see traksense/db/sql/51_invalidation.sql).
--
-- Writes into a tier's source at or above its threshold are not logged in ts_invalidation: the
-- next refresh materializes everything from the tier's watermark on with one range scan of the
-- source. A separate table, not a ts_tier column: writers hold a FOR SHARE lock on their tier's
-- row until they commit, and a refresh moving the threshold waits for them on that lock; the
-- watermark updates of ts_tier must not queue behind ingest the same way.
CREATE TABLE ts_invalidation_threshold (
    tier      text PRIMARY KEY REFERENCES ts_tier (tier),
    threshold timestamptz NOT NULL DEFAULT '-infinity'
);
-- Until now every write was logged: a threshold at the watermark is exact from here on (the
-- region above it is range-scanned, and its old log entries are claimed there).
INSERT INTO ts_invalidation_threshold (tier, threshold)
SELECT tier, watermark FROM ts_tier WHERE bucket_width IS NOT NULL;

-- Tier rows can exist at or above the watermark only where a parallel refresh committed a
-- chunk whose predecessor failed. `dirty_until` bounds them: from max(watermark, dirty_until)
-- on a tier holds no row, so a refresh may insert there without conflict checks.
ALTER TABLE ts_tier ADD COLUMN dirty_until timestamptz NOT NULL DEFAULT '-infinity';
DO $$
DECLARE
    v record;
    v_max timestamptz;
BEGIN
    -- One scan of the partitions above each watermark, once (the old engine left rows there
    -- only after a failed parallel run).
    FOR v IN SELECT * FROM ts_tier WHERE bucket_width IS NOT NULL LOOP
        EXECUTE format('SELECT max(bucket) FROM %I WHERE bucket >= $1', v.relation)
            INTO v_max USING v.watermark;
        IF v_max IS NOT NULL THEN
            UPDATE ts_tier SET dirty_until = v_max + v.bucket_width WHERE tier = v.tier;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON ts_invalidation_threshold FROM PUBLIC;

-- A refresh materializes the region above a tier's watermark with one range scan by time of its
-- source, over all series: the rollup tiers get the time index the raw table has. Buckets are
-- written in time order, so a few pages per partition suffice, as for ts_measure.
CREATE INDEX ts_measure_1m_bucket_brin ON ts_measure_1m USING brin (bucket) WITH (pages_per_range = 32);
CREATE INDEX ts_measure_5m_bucket_brin ON ts_measure_5m USING brin (bucket) WITH (pages_per_range = 32);
CREATE INDEX ts_measure_1h_bucket_brin ON ts_measure_1h USING brin (bucket) WITH (pages_per_range = 32);
