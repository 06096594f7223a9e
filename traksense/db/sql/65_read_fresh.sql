-- Read-your-writes for the rollup reads (issue 16): which stored buckets of a series a pending
-- invalidation has made stale, and those buckets recomputed from their source. Used by the
-- prelude of ts_read_rollup_<tier> (65_read.sql).
--
-- A key of ts_invalidation (tier, series, bucket) says: the source of that tier's bucket changed
-- after the bucket was materialized (a late sample, an overwrite, a delete), and the next
-- refresh will recompute it; refreshing it logs the bucket of the next tier in turn. So a stored
-- bucket of tier T is stale when the series has a key of T itself or of a finer tier inside it:
-- 1m: keys of 1m; 5m: of 1m and 5m; 1h: of 1m, 5m and 1h. Only keys below their tier's
-- watermark count: above it a tier is computed on the fly from its source, already fresh. A
-- bucket that starts before its source tier's expired_before is never recomputed (the refresh's
-- expiry protection, 53_refresh_chunk.sql): its stored value stands.
--
-- The recomputation goes through the chain, as the refresh does: 1m from the raw samples, 5m
-- from the 1m rows and 1h from the 5m rows, the finer rows themselves fresh (a stale finer bucket
-- is recomputed the same way). A sum carried through a recomputed finer bucket is rebuilt from
-- its average (v_avg * n) and may differ from the refresh's sum of sums in the last bit.

CREATE OR REPLACE FUNCTION ts_stale_buckets(
    p_tier text, p_series bigint, p_lo timestamptz, p_end timestamptz)
RETURNS timestamptz[]
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
BEGIN
    -- PL/pgSQL keeps the plans for the session: every rollup read calls this, and a SQL
    -- function would be planned again on each call (0.6 ms; the lookup itself is an index probe).
    -- A window ending inside a bucket still reads that bucket: keys of finer tiers up to its
    -- end count (+ 1 hour: the widest bucket), not only those before p_end.
    IF NOT EXISTS (SELECT FROM ts_invalidation i
                   WHERE i.series_id = p_series AND i.bucket < p_end + interval '1 hour'
                     AND i.bucket >= p_lo - interval '1 hour') THEN
        RETURN NULL;
    END IF;
    RETURN (
    SELECT array_agg(DISTINCT k.b ORDER BY k.b)
    FROM (SELECT date_bin(w.bucket_width, i.bucket, timestamptz '2000-01-03 00:00:00+00') AS b
          FROM (SELECT t.bucket_width, s.expired_before
                FROM ts_tier t JOIN ts_tier s ON s.tier = t.source_tier
                WHERE t.tier = p_tier) w
          JOIN ts_invalidation i
            ON i.series_id = p_series
           AND i.bucket >= CASE WHEN isfinite(p_lo)
                                THEN date_bin(w.bucket_width, p_lo,
                                              timestamptz '2000-01-03 00:00:00+00')
                                ELSE p_lo END
           AND i.bucket < ts_bucket_ceil(w.bucket_width, p_end)
          JOIN ts_tier kt ON kt.tier = i.tier AND i.bucket < kt.watermark
          WHERE i.tier = ANY (CASE p_tier WHEN '1m' THEN '{1m}'::text[]
                                          WHEN '5m' THEN '{1m,5m}'::text[]
                                          ELSE '{1m,5m,1h}'::text[] END)
            AND date_bin(w.bucket_width, i.bucket, timestamptz '2000-01-03 00:00:00+00')
                >= greatest(p_lo, w.expired_before)) k);
END
$$;
COMMENT ON FUNCTION ts_stale_buckets(text, bigint, timestamptz, timestamptz) IS
    'Internal: the buckets of a tier, in [lo, end), whose stored rollup of the series a pending '
    'invalidation has made stale (NULL: none). 65_read_fresh.sql.';

-- 1m from the raw samples: one statement over the uncompressed samples, an index range per
-- bucket. A bucket in a compressed raw day (late data is restored from the compressed store
-- when written, but the day may have been compressed again before the refresh ran) is read
-- through ts_read_raw, which decodes it.
CREATE OR REPLACE FUNCTION ts_fresh_1m(p_series bigint, p_buckets timestamptz[])
RETURNS TABLE (ts timestamptz, v_avg float8, v_min float8, v_max float8, n integer)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM ts_measure_z z
                   WHERE z.series_id = p_series
                     AND z.seg_start IN (SELECT ts_partition_start('raw', b)
                                         FROM unnest(p_buckets) b)) THEN
        RETURN QUERY
            SELECT b.b, sum(m.v_num) / count(*), min(m.v_num), max(m.v_num), count(*)::integer
            FROM unnest(p_buckets) AS b(b)
            JOIN ts_measure m ON m.series_id = p_series
                             AND m.ts >= b.b AND m.ts < b.b + interval '1 minute'
                             AND m.v_num IS NOT NULL
            GROUP BY b.b;
    ELSE
        RETURN QUERY
            SELECT b.b, a.s / a.c, a.mi, a.ma, a.c
            FROM unnest(p_buckets) AS b(b)
            CROSS JOIN LATERAL (
                SELECT sum(r.v_num) AS s, min(r.v_num) AS mi, max(r.v_num) AS ma,
                       count(*)::integer AS c
                FROM ts_read_raw(p_series, b.b, b.b + interval '1 minute', 2147483647) r
                WHERE r.v_num IS NOT NULL) a
            WHERE a.c > 0;
    END IF;
END
$$;

-- 5m from 1m, 1h from 5m: the finer tier's rows inside the stale buckets, except the finer
-- buckets that are stale themselves, which come recomputed from ts_fresh_<finer>; one statement,
-- an index range per bucket. When every stale bucket lies below the finer tier's watermark in
-- uncompressed partitions (the common case: late data is recent) the rows come from the finer
-- tier's table itself; otherwise from its real-time view (compressed rows decoded, the region
-- above the watermark on the fly), which costs about ten times more per bucket.
DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('5m', '1m', '5 minutes'), ('1h', '5m', '1 hour'))
                           AS v(tier, finer, width) LOOP
        EXECUTE format($template$
CREATE OR REPLACE FUNCTION ts_fresh_%1$s(p_series bigint, p_buckets timestamptz[])
RETURNS TABLE (ts timestamptz, v_avg float8, v_min float8, v_max float8, n integer)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_lo constant timestamptz := (SELECT min(b) FROM unnest(p_buckets) b);
    v_hi constant timestamptz := (SELECT max(b) FROM unnest(p_buckets) b) + interval %3$L;
    v_stale timestamptz[];
BEGIN
    SELECT coalesce(array_agg(f ORDER BY f), '{}') INTO v_stale
    FROM unnest(ts_stale_buckets(%2$L, p_series, v_lo, v_hi)) f
    WHERE date_bin(interval %3$L, f, timestamptz '2000-01-03 00:00:00+00') = ANY (p_buckets);
    IF v_hi <= (SELECT t.watermark FROM ts_tier t WHERE t.tier = %2$L)
       AND NOT EXISTS (SELECT FROM ts_measure_%2$s_z z
                       WHERE z.series_id = p_series
                         AND z.seg_start IN (SELECT ts_partition_start(%2$L, b)
                                             FROM unnest(p_buckets) b)) THEN
        RETURN QUERY
            SELECT date_bin(interval %3$L, u.bucket, timestamptz '2000-01-03 00:00:00+00'),
                   sum(u.v_sum) / sum(u.n), min(u.v_min), max(u.v_max), sum(u.n)::integer
            FROM (SELECT m.bucket, m.v_sum, m.v_min, m.v_max, m.n
                  FROM unnest(p_buckets) AS b(b)
                  JOIN ts_measure_%2$s m ON m.series_id = p_series
                                         AND m.bucket >= b.b AND m.bucket < b.b + interval %3$L
                  WHERE m.bucket <> ALL (v_stale)
                  UNION ALL
                  SELECT f.ts, f.v_avg * f.n, f.v_min, f.v_max, f.n
                  FROM ts_fresh_%2$s(p_series, v_stale) f) u
            GROUP BY 1;
    ELSE
        RETURN QUERY
            SELECT date_bin(interval %3$L, u.bucket, timestamptz '2000-01-03 00:00:00+00'),
                   sum(u.v_sum) / sum(u.n), min(u.v_min), max(u.v_max), sum(u.n)::integer
            FROM (SELECT r.bucket, r.v_sum, r.v_min, r.v_max, r.n
                  FROM unnest(p_buckets) AS b(b)
                  CROSS JOIN LATERAL (
                      SELECT r.bucket, r.v_sum, r.v_min, r.v_max, r.n
                      FROM ts_measure_%2$s_rt r
                      WHERE r.series_id = p_series
                        AND r.bucket >= b.b AND r.bucket < b.b + interval %3$L
                        AND r.segment >= ts_partition_start(%2$L, b.b)
                        AND r.segment < b.b + interval %3$L) r
                  WHERE r.bucket <> ALL (v_stale)
                  UNION ALL
                  SELECT f.ts, f.v_avg * f.n, f.v_min, f.v_max, f.n
                  FROM ts_fresh_%2$s(p_series, v_stale) f) u
            GROUP BY 1;
    END IF;
END
$$;
$template$, t.tier, t.finer, t.width);
    END LOOP;
END
$do$;

REVOKE ALL ON FUNCTION ts_stale_buckets(text, bigint, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_fresh_1m(bigint, timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_fresh_5m(bigint, timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_fresh_1h(bigint, timestamptz[]) FROM PUBLIC;
