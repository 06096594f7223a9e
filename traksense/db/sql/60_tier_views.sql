-- What app_user reads of the rollups: one tenant view per tier, real-time by default.
--
-- Per tier, internal relations (series_id, bucket, v_sum, v_min, v_max, n, segment):
--   ts_measure_<tier>_fly   the buckets from the tier's watermark on, aggregated on the fly from
--                           the source tier's live relation (1m from raw samples, 5m from
--                           ts_measure_1m_live, 1h from ts_measure_5m_live), so a dashboard
--                           never lags by the refresh interval;
--   ts_measure_<tier>_live  the uncompressed materialized buckets below the watermark, plus _fly;
--   ts_measure_<tier>_rt    _live plus the decoded compressed store (ts_measure_<tier>_zrows,
--                           55_compression_codec.sql) below the watermark.
-- Shape: the branches of each UNION ALL are bare relations and the watermark test sits outside
-- it, keyed on a `fly` marker. PostgreSQL only flattens a UNION ALL branch without a WHERE of
-- its own into the parent's append; flattened, a caller's `series_id = $1 ... ORDER BY bucket`
-- reads the tier's partitions in index order (Merge Append) instead of sorting every row. The
-- marker is a constant per branch, so the outer test folds to `bucket < watermark` on the
-- materialized branches and to nothing on _fly.
-- The on-the-fly branches read no compressed data: compression only takes a partition that the
-- next tier's watermark has passed (ts_compression_candidates), and on-the-fly buckets are above
-- that watermark. A segment lives either uncompressed or compressed, never both, so answers are
-- identical before and after compression. The on-the-fly branch is skipped (a one-time filter,
-- never executed) when the transaction sets app.materialized_only = 'on'. Watermarks are
-- bucket-aligned (ts_refresh_bounds), so branches never split a bucket.
--
-- `segment` lets a range query skip compressed segments: for a compressed row it is the start
-- of its segment (the tier partition holding it), for any other row the bucket itself. Rows with
-- bucket in [S, E) all have segment in [ts_partition_start(tier, S), E), and that condition
-- prunes the compressed store by its primary key and partitions before anything is decoded.
--
-- The tenant views add identity and the tenant filter, security_barrier as the raw view. Caller
-- predicates on series_id, bucket and segment are leakproof comparisons: they are pushed through
-- the barrier and the UNION ALL into each branch, where they use the (series_id, bucket) or
-- (series_id, seg_start) primary keys and partition pruning.
-- (CREATE OR REPLACE VIEW may only append columns: reordering them needs a DROP first.)

CREATE OR REPLACE VIEW ts_measure_1m_fly AS
SELECT f.series_id, date_bin('1 minute', f.ts, timestamptz '2000-01-03 00:00:00+00') AS bucket,
       sum(f.v_num) AS v_sum, min(f.v_num) AS v_min, max(f.v_num) AS v_max, count(*)::integer AS n,
       date_bin('1 minute', f.ts, timestamptz '2000-01-03 00:00:00+00') AS segment
FROM ts_measure f
WHERE f.ts >= (SELECT t.watermark FROM ts_tier t WHERE t.tier = '1m')
  AND f.v_num IS NOT NULL
  AND coalesce(current_setting('app.materialized_only', true), '') <> 'on'
GROUP BY 1, 2;
COMMENT ON VIEW ts_measure_1m_fly IS
    'Internal: 1m rollups from the watermark on, aggregated on the fly from raw samples.';

CREATE OR REPLACE VIEW ts_measure_1m_live AS
SELECT u.series_id, u.bucket, u.v_sum, u.v_min, u.v_max, u.n, u.segment
FROM (SELECT m.series_id, m.bucket, m.v_sum, m.v_min, m.v_max, m.n, m.bucket AS segment,
             false AS fly
      FROM ts_measure_1m m
      UNION ALL
      SELECT f.series_id, f.bucket, f.v_sum, f.v_min, f.v_max, f.n, f.segment, true
      FROM ts_measure_1m_fly f) u
WHERE u.fly OR u.bucket < (SELECT t.watermark FROM ts_tier t WHERE t.tier = '1m');
COMMENT ON VIEW ts_measure_1m_live IS
    'Internal: uncompressed 1m rollups below the watermark, on the fly above it.';

CREATE OR REPLACE VIEW ts_measure_1m_rt AS
SELECT u.series_id, u.bucket, u.v_sum, u.v_min, u.v_max, u.n, u.segment
FROM (SELECT m.series_id, m.bucket, m.v_sum, m.v_min, m.v_max, m.n, m.bucket AS segment,
             false AS fly
      FROM ts_measure_1m m
      UNION ALL
      SELECT z.series_id, z.bucket, z.v_sum, z.v_min, z.v_max, z.n, z.seg_start, false
      FROM ts_measure_1m_zrows z
      UNION ALL
      SELECT f.series_id, f.bucket, f.v_sum, f.v_min, f.v_max, f.n, f.segment, true
      FROM ts_measure_1m_fly f) u
WHERE u.fly OR u.bucket < (SELECT t.watermark FROM ts_tier t WHERE t.tier = '1m');
COMMENT ON VIEW ts_measure_1m_rt IS
    'Internal: all 1m rollups: materialized (uncompressed or compressed) below the '
    'watermark, on the fly above it.';

CREATE OR REPLACE VIEW ts_measure_5m_fly AS
SELECT f.series_id, date_bin('5 minutes', f.bucket, timestamptz '2000-01-03 00:00:00+00') AS bucket,
       sum(f.v_sum) AS v_sum, min(f.v_min) AS v_min, max(f.v_max) AS v_max, sum(f.n)::integer AS n,
       date_bin('5 minutes', f.bucket, timestamptz '2000-01-03 00:00:00+00') AS segment
FROM ts_measure_1m_live f
WHERE f.bucket >= (SELECT t.watermark FROM ts_tier t WHERE t.tier = '5m')
  AND coalesce(current_setting('app.materialized_only', true), '') <> 'on'
GROUP BY 1, 2;
COMMENT ON VIEW ts_measure_5m_fly IS
    'Internal: 5m rollups from the watermark on, aggregated on the fly from 1-minute ones.';

CREATE OR REPLACE VIEW ts_measure_5m_live AS
SELECT u.series_id, u.bucket, u.v_sum, u.v_min, u.v_max, u.n, u.segment
FROM (SELECT m.series_id, m.bucket, m.v_sum, m.v_min, m.v_max, m.n, m.bucket AS segment,
             false AS fly
      FROM ts_measure_5m m
      UNION ALL
      SELECT f.series_id, f.bucket, f.v_sum, f.v_min, f.v_max, f.n, f.segment, true
      FROM ts_measure_5m_fly f) u
WHERE u.fly OR u.bucket < (SELECT t.watermark FROM ts_tier t WHERE t.tier = '5m');
COMMENT ON VIEW ts_measure_5m_live IS
    'Internal: uncompressed 5m rollups below the watermark, on the fly above it.';

CREATE OR REPLACE VIEW ts_measure_5m_rt AS
SELECT u.series_id, u.bucket, u.v_sum, u.v_min, u.v_max, u.n, u.segment
FROM (SELECT m.series_id, m.bucket, m.v_sum, m.v_min, m.v_max, m.n, m.bucket AS segment,
             false AS fly
      FROM ts_measure_5m m
      UNION ALL
      SELECT z.series_id, z.bucket, z.v_sum, z.v_min, z.v_max, z.n, z.seg_start, false
      FROM ts_measure_5m_zrows z
      UNION ALL
      SELECT f.series_id, f.bucket, f.v_sum, f.v_min, f.v_max, f.n, f.segment, true
      FROM ts_measure_5m_fly f) u
WHERE u.fly OR u.bucket < (SELECT t.watermark FROM ts_tier t WHERE t.tier = '5m');
COMMENT ON VIEW ts_measure_5m_rt IS
    'Internal: all 5m rollups: materialized (uncompressed or compressed) below the '
    'watermark, on the fly above it.';

CREATE OR REPLACE VIEW ts_measure_1h_fly AS
SELECT f.series_id, date_bin('1 hour', f.bucket, timestamptz '2000-01-03 00:00:00+00') AS bucket,
       sum(f.v_sum) AS v_sum, min(f.v_min) AS v_min, max(f.v_max) AS v_max, sum(f.n)::integer AS n,
       date_bin('1 hour', f.bucket, timestamptz '2000-01-03 00:00:00+00') AS segment
FROM ts_measure_5m_live f
WHERE f.bucket >= (SELECT t.watermark FROM ts_tier t WHERE t.tier = '1h')
  AND coalesce(current_setting('app.materialized_only', true), '') <> 'on'
GROUP BY 1, 2;
COMMENT ON VIEW ts_measure_1h_fly IS
    'Internal: 1h rollups from the watermark on, aggregated on the fly from 5-minute ones.';

CREATE OR REPLACE VIEW ts_measure_1h_rt AS
SELECT u.series_id, u.bucket, u.v_sum, u.v_min, u.v_max, u.n, u.segment
FROM (SELECT m.series_id, m.bucket, m.v_sum, m.v_min, m.v_max, m.n, m.bucket AS segment,
             false AS fly
      FROM ts_measure_1h m
      UNION ALL
      SELECT z.series_id, z.bucket, z.v_sum, z.v_min, z.v_max, z.n, z.seg_start, false
      FROM ts_measure_1h_zrows z
      UNION ALL
      SELECT f.series_id, f.bucket, f.v_sum, f.v_min, f.v_max, f.n, f.segment, true
      FROM ts_measure_1h_fly f) u
WHERE u.fly OR u.bucket < (SELECT t.watermark FROM ts_tier t WHERE t.tier = '1h');
COMMENT ON VIEW ts_measure_1h_rt IS
    'Internal: all 1h rollups: materialized (uncompressed or compressed) below the '
    'watermark, on the fly above it.';

CREATE OR REPLACE VIEW ts_measure_1m_tenant WITH (security_barrier = true) AS
SELECT r.bucket, s.tenant_id, s.device_id, s.point_id,
       r.v_sum / r.n AS v_avg, r.v_min, r.v_max, r.n, r.v_sum, r.series_id, r.segment
FROM ts_measure_1m_rt r
JOIN ts_series s ON s.series_id = r.series_id
WHERE s.tenant_id = ts_current_tenant();
COMMENT ON VIEW ts_measure_1m_tenant IS
    '1-minute rollups of the current tenant (app.tenant_id), real-time unless '
    'app.materialized_only = on; empty when the tenant is unset. segment: see 60_tier_views.sql.';

CREATE OR REPLACE VIEW ts_measure_5m_tenant WITH (security_barrier = true) AS
SELECT r.bucket, s.tenant_id, s.device_id, s.point_id,
       r.v_sum / r.n AS v_avg, r.v_min, r.v_max, r.n, r.v_sum, r.series_id, r.segment
FROM ts_measure_5m_rt r
JOIN ts_series s ON s.series_id = r.series_id
WHERE s.tenant_id = ts_current_tenant();
COMMENT ON VIEW ts_measure_5m_tenant IS
    '5-minute rollups of the current tenant (app.tenant_id), real-time unless '
    'app.materialized_only = on; empty when the tenant is unset. segment: see 60_tier_views.sql.';

CREATE OR REPLACE VIEW ts_measure_1h_tenant WITH (security_barrier = true) AS
SELECT r.bucket, s.tenant_id, s.device_id, s.point_id,
       r.v_sum / r.n AS v_avg, r.v_min, r.v_max, r.n, r.v_sum, r.series_id, r.segment
FROM ts_measure_1h_rt r
JOIN ts_series s ON s.series_id = r.series_id
WHERE s.tenant_id = ts_current_tenant();
COMMENT ON VIEW ts_measure_1h_tenant IS
    '1-hour rollups of the current tenant (app.tenant_id), real-time unless '
    'app.materialized_only = on; empty when the tenant is unset. segment: see 60_tier_views.sql.';

REVOKE ALL ON ts_measure_1m_fly, ts_measure_5m_fly, ts_measure_1h_fly FROM PUBLIC;
REVOKE ALL ON ts_measure_1m_live, ts_measure_5m_live FROM PUBLIC;
REVOKE ALL ON ts_measure_1m_rt, ts_measure_5m_rt, ts_measure_1h_rt FROM PUBLIC;
REVOKE ALL ON ts_measure_1m_tenant, ts_measure_5m_tenant, ts_measure_1h_tenant FROM PUBLIC;
GRANT SELECT ON ts_measure_1m_tenant, ts_measure_5m_tenant, ts_measure_1h_tenant TO app_user;
