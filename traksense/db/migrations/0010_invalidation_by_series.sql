-- Read-your-writes (issue 16): a read of one series looks up that series' pending invalidations
-- in its window (65_read.sql, ts_stale_buckets). The refresh's index leads with (tier, bucket)
-- for its claims across all series; this one answers "which keys of this series, in this
-- range" with one index range scan. It is written only for logged keys (late data, overwrites,
-- deletes below the invalidation threshold), never for the in-order stream.
CREATE INDEX IF NOT EXISTS ts_invalidation_series ON ts_invalidation (series_id, bucket);
