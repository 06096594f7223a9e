-- Compressed state rollups (0011_state_storage.sql): a tier partition's sibling of state rows is
-- compressed with it, in ts_compress_partition's last transaction and under its locks (no
-- refresh of the tier writes meanwhile); a write into a compressed range restores the segments
-- it touches first (ts_state_refresh, 54_state_refresh.sql), and the next compression job
-- compresses them again; reads take the table's rows and the decoded segments together
-- (ts_state_stored, 69_state_fresh.sql).
--
-- Columnar arrays compress because a state series' rows repeat: a polled on/off point's 1m
-- buckets are consecutive (no offs), n and changes mostly 1 and 0, the same few values and
-- time_in objects, the sample at the same second of every minute.

-- The rows of one compressed segment, in bucket order.
CREATE OR REPLACE FUNCTION ts_state_z_decode(z ts_state_z, p_width interval)
RETURNS SETOF ts_state_1m
LANGUAGE sql IMMUTABLE
AS $$
    SELECT z.series_id, b.bucket, u.n,
           b.bucket + u.tf * interval '1 microsecond', b.bucket + u.tl * interval '1 microsecond',
           u.sf, u.sl, u.ch, u.ti,
           -- the scaled readings: k / scale with the arithmetic ts_z_exact checked
           coalesce(u.vf, u.kf::float8 / z.scale), coalesce(u.vl, (u.kf + u.kl)::float8 / z.scale),
           u.d
    FROM (SELECT u.*, sum(u.dk) OVER (ORDER BY u.i) AS kf
          FROM unnest(z.offs, z.n, z.t_first_us, z.t_last_us, z.s_first, z.s_last, z.changes,
                      z.time_in, z.v_first, z.v_last, z.delta, z.k_first, z.k_last)
               WITH ORDINALITY AS u(off, n, tf, tl, sf, sl, ch, ti, vf, vl, d, dk, kl, i)) u
    CROSS JOIN LATERAL (
        SELECT CASE WHEN z.offs IS NULL THEN z.first_bucket + (u.i - 1) * p_width
                    ELSE z.seg_start + u.off * p_width END AS bucket) b
    ORDER BY u.i
$$;
COMMENT ON FUNCTION ts_state_z_decode(ts_state_z, interval) IS
    'Internal: the state rows of one compressed segment, in order. 58_state_compress.sql.';

-- The compressed state rows of a series with lo <= bucket < hi, in order.
CREATE OR REPLACE FUNCTION ts_state_z_rows(
    p_tier text, p_series bigint, p_lo timestamptz, p_hi timestamptz)
RETURNS SETOF ts_state_1m
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT d.*
    FROM ts_tier t
    JOIN ts_state_z z ON z.tier = t.tier
    CROSS JOIN LATERAL ts_state_z_decode(z, t.bucket_width) d
    WHERE t.tier = p_tier AND z.series_id = p_series
      AND z.seg_start < p_hi AND z.last_bucket >= p_lo
      AND d.bucket >= p_lo AND d.bucket < p_hi
    ORDER BY d.bucket
$$;
COMMENT ON FUNCTION ts_state_z_rows(text, bigint, timestamptz, timestamptz) IS
    'Internal: the compressed state rows of a series with lo <= bucket < hi, in order. '
    '58_state_compress.sql.';

-- The latest compressed bucket of a series before p_before (p_latest), or the earliest at or
-- after p_from; NULL when there is none. Segments do not overlap: the one segment that can
-- hold it is found by its bounds, and decoded only when it straddles the instant.
CREATE OR REPLACE FUNCTION ts_state_z_bound(
    p_tier text, p_series bigint, p_from timestamptz, p_before timestamptz, p_latest boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    z ts_state_z;
BEGIN
    IF p_latest THEN
        SELECT * INTO z FROM ts_state_z s
        WHERE s.tier = p_tier AND s.series_id = p_series AND s.seg_start < p_before
          AND s.first_bucket < p_before
        ORDER BY s.seg_start DESC LIMIT 1;
        IF z.series_id IS NULL OR z.last_bucket < p_before THEN
            RETURN z.last_bucket;
        END IF;
        RETURN (SELECT max(r.bucket) FROM ts_state_z_rows(p_tier, p_series, z.seg_start, p_before) r);
    END IF;
    SELECT * INTO z FROM ts_state_z s
    WHERE s.tier = p_tier AND s.series_id = p_series AND s.last_bucket >= p_from
      AND s.seg_start > p_from - (SELECT t.partition_width FROM ts_tier t WHERE t.tier = p_tier)
    ORDER BY s.seg_start LIMIT 1;
    IF z.series_id IS NULL OR z.first_bucket >= p_from THEN
        RETURN z.first_bucket;
    END IF;
    RETURN (SELECT min(r.bucket)
            FROM ts_state_z_rows(p_tier, p_series, p_from,
                                 z.seg_start + (SELECT t.partition_width FROM ts_tier t
                                                WHERE t.tier = p_tier)) r);
END
$$;
COMMENT ON FUNCTION ts_state_z_bound(text, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: a series'' latest compressed state bucket before an instant, or earliest from '
    'one. 58_state_compress.sql.';

-- Compress the state rows of a tier's partition starting at p_lo into ts_state_z; returns the
-- rows moved. Called by ts_compress_partition with the tier's refresh and compression locks
-- held. A series both compressed and present in the table (restored for late data, then
-- rewritten) is merged: its segment is restored first, then the whole moves again.
CREATE OR REPLACE FUNCTION ts_state_compress(p_tier text, p_lo timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_part constant text := ts_state_partition(p_tier, p_lo);
    v_width constant interval := (SELECT t.bucket_width FROM ts_tier t WHERE t.tier = p_tier);
    v_rows bigint;
BEGIN
    IF to_regclass(v_part) IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format(
        'SELECT ts_state_restore($1, array_agg(x.series_id),
                                 array_fill($2, ARRAY[count(*)::integer]))
         FROM (SELECT DISTINCT p.series_id FROM %I p
               WHERE EXISTS (SELECT FROM ts_state_z z WHERE z.tier = $1 AND z.seg_start = $2
                                                        AND z.series_id = p.series_id)) x
         HAVING count(*) > 0', v_part)
    USING p_tier, p_lo;
    EXECUTE format($q$
        WITH sc AS (
            -- A counter's readings: the smallest decimal scale every reading of the series'
            -- segment meets exactly (NULL: none, or not a counter).
            SELECT x.series_id,
                   CASE WHEN bool_and(x.v_first IS NOT NULL AND x.v_last IS NOT NULL) THEN
                       CASE WHEN bool_and(ts_z_exact(x.v_first, 0::smallint)
                                          AND ts_z_exact(x.v_last, 0::smallint)) THEN 1
                            WHEN bool_and(ts_z_exact(x.v_first, 1::smallint)
                                          AND ts_z_exact(x.v_last, 1::smallint)) THEN 10
                            WHEN bool_and(ts_z_exact(x.v_first, 2::smallint)
                                          AND ts_z_exact(x.v_last, 2::smallint)) THEN 100
                            WHEN bool_and(ts_z_exact(x.v_first, 3::smallint)
                                          AND ts_z_exact(x.v_last, 3::smallint)) THEN 1000
                            WHEN bool_and(ts_z_exact(x.v_first, 4::smallint)
                                          AND ts_z_exact(x.v_last, 4::smallint)) THEN 10000
                       END
                   END::float8 AS scale
            FROM %1$I x GROUP BY x.series_id
        ), r AS (
            SELECT s.*, sc.scale,
                   round(s.v_first * sc.scale)::int8 AS kf, round(s.v_last * sc.scale)::int8 AS kl
            FROM %1$I s JOIN sc ON sc.series_id = s.series_id
        ), w AS (
            SELECT r.*, r.kf - coalesce(lag(r.kf) OVER (PARTITION BY r.series_id ORDER BY r.bucket), 0)
                       AS dk
            FROM r
        ), moved AS (
            INSERT INTO ts_state_z (tier, series_id, seg_start, first_bucket, last_bucket, n_rows,
                                    offs, n, t_first_us, t_last_us, s_first, s_last, changes,
                                    time_in, v_first, v_last, delta, scale, k_first, k_last)
            SELECT $1, s.series_id, $2, min(s.bucket), max(s.bucket), count(*),
                   CASE WHEN max(s.bucket) - min(s.bucket) <> (count(*) - 1) * $3
                        THEN array_agg((extract(epoch FROM s.bucket - $2)
                                        / extract(epoch FROM $3))::integer ORDER BY s.bucket)
                   END,
                   array_agg(s.n ORDER BY s.bucket),
                   array_agg((extract(epoch FROM s.t_first - s.bucket) * 1000000)::bigint
                             ORDER BY s.bucket),
                   array_agg((extract(epoch FROM s.t_last - s.bucket) * 1000000)::bigint
                             ORDER BY s.bucket),
                   CASE WHEN count(s.s_first) > 0 THEN array_agg(s.s_first ORDER BY s.bucket) END,
                   CASE WHEN count(s.s_last) > 0 THEN array_agg(s.s_last ORDER BY s.bucket) END,
                   array_agg(s.changes ORDER BY s.bucket),
                   array_agg(s.time_in ORDER BY s.bucket),
                   CASE WHEN count(s.v_first) > 0 AND min(s.scale) IS NULL
                        THEN array_agg(s.v_first ORDER BY s.bucket) END,
                   CASE WHEN count(s.v_last) > 0 AND min(s.scale) IS NULL
                        THEN array_agg(s.v_last ORDER BY s.bucket) END,
                   CASE WHEN count(s.delta) > 0 THEN array_agg(s.delta ORDER BY s.bucket) END,
                   min(s.scale),
                   CASE WHEN min(s.scale) IS NOT NULL THEN array_agg(s.dk ORDER BY s.bucket) END,
                   CASE WHEN min(s.scale) IS NOT NULL
                        THEN array_agg(s.kl - s.kf ORDER BY s.bucket) END
            FROM w s GROUP BY s.series_id
            RETURNING n_rows
        )
        SELECT coalesce(sum(n_rows), 0) FROM moved$q$, v_part)
    INTO v_rows
    USING p_tier, p_lo, v_width;
    -- DELETE, not TRUNCATE (which the numeric partition gets): TRUNCATE is not MVCC-safe, and
    -- a REPEATABLE READ read (every API read) whose snapshot predates this commit would find
    -- the partition empty and the segments not yet there; it also takes ACCESS EXCLUSIVE, which
    -- with the numeric partition's in the same transaction could deadlock with a reader of both.
    -- The space comes back to the next writes after autovacuum (state rows are few).
    EXECUTE format('DELETE FROM %I', v_part);
    RETURN v_rows;
END
$$;
COMMENT ON FUNCTION ts_state_compress(text, timestamptz) IS
    'Internal (ts_compress_partition): compress the state rows of a tier partition; returns the '
    'rows moved. 58_state_compress.sql.';

-- Restore into the tier's table the compressed segments holding the given (series, bucket)
-- keys, each key covering [bucket, bucket + p_width) (a coarser bucket read from this tier),
-- else one instant; returns the rows restored. Serialises with the tier's compression on its
-- lock, held until commit.
CREATE OR REPLACE FUNCTION ts_state_restore(
    p_tier text, p_series bigint[], p_buckets timestamptz[], p_width interval DEFAULT '0')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_restored bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('traksense.compress.' || p_tier));
    EXECUTE format($q$
        WITH keys AS (
            SELECT DISTINCT u.s, ts_partition_start($1, e.at) AS seg
            FROM unnest($2::bigint[], $3::timestamptz[]) AS u(s, b)
            CROSS JOIN LATERAL (VALUES (u.b),
                (u.b + greatest($4 - interval '1 microsecond', interval '0'))) AS e(at)
        ), gone AS (
            DELETE FROM ts_state_z z USING keys k
            WHERE z.tier = $1 AND z.series_id = k.s AND z.seg_start = k.seg
            RETURNING z.*
        ), restored AS (
            -- (a row already in the table is the newer one: never the case when every writer
            -- restores first, as ts_state_refresh does)
            INSERT INTO %I
            SELECT d.* FROM gone g CROSS JOIN LATERAL ts_state_z_decode(g, $5) d
            ON CONFLICT (series_id, bucket) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM restored$q$, 'ts_state_' || p_tier)
    INTO v_restored
    USING p_tier, p_series, p_buckets, p_width,
          (SELECT t.bucket_width FROM ts_tier t WHERE t.tier = p_tier);
    RETURN v_restored;
END
$$;
COMMENT ON FUNCTION ts_state_restore(text, bigint[], timestamptz[], interval) IS
    'Internal: restore the compressed state segments holding the given (series, bucket) keys '
    'into the tier''s table; returns the rows restored. 58_state_compress.sql.';

REVOKE ALL ON FUNCTION ts_state_z_decode(ts_state_z, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_z_rows(text, bigint, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_z_bound(text, bigint, timestamptz, timestamptz, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_compress(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_restore(text, bigint[], timestamptz[], interval) FROM PUBLIC;
