-- State rollups of boolean and text points, and counters' deltas (0009_state_rollups.sql,
-- docs/rollups.md): how a bucket's row is computed from its samples or from the finer tier's
-- rows, and the refresh of a chunk's state buckets, called by ts_refresh_chunk
-- (53_refresh_chunk.sql) in its transaction, under its locks, with the keys it claimed and the
-- region it covers.
--
-- A row depends only on the samples inside its bucket, so the invalidations the numeric engine
-- keeps (every write to raw logs its 1m buckets; every changed bucket its next-tier bucket) are
-- exactly the buckets to recompute here too.

CREATE OR REPLACE FUNCTION ts_state_max_gap()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$ SELECT coalesce((SELECT c.max_gap FROM ts_state_config c), interval '10 minutes') $$;
COMMENT ON FUNCTION ts_state_max_gap() IS
    'How long a state holds after its sample at most (STATE_MAX_GAP_SECONDS).';

-- At most 16 named values (the most seconds first, then by name); the rest, and any "other"
-- already folded at a finer tier, summed as "other".
CREATE OR REPLACE FUNCTION ts_state_fold(p jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN (SELECT count(*) FROM jsonb_object_keys(p)) <= 16 THEN p
    ELSE (SELECT jsonb_object_agg(f.k, f.s)
          FROM (SELECT CASE WHEN r.rank <= 16 THEN r.key ELSE 'other' END AS k, sum(r.secs) AS s
                FROM (SELECT e.key, e.value::float8 AS secs,
                             row_number() OVER (ORDER BY e.key = 'other', e.value::float8 DESC,
                                                e.key) AS rank
                      FROM jsonb_each_text(p) e) r
                GROUP BY 1) f) END
$$;

-- Add `secs` seconds in state `k` to a time_in object (nothing when secs <= 0 or k is NULL).
CREATE OR REPLACE FUNCTION ts_state_add(p jsonb, k text, secs float8)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN k IS NULL OR secs IS NULL OR secs <= 0 THEN p
                ELSE jsonb_set(p, ARRAY[k], to_jsonb(coalesce((p ->> k)::float8, 0) + secs)) END
$$;

-- A counter's increase from one sample to the next: a decrease is a reset (the meter restarted
-- from zero, so its value is the increase since), as Prometheus' increase(). NULL without a
-- previous sample.
CREATE OR REPLACE FUNCTION ts_counter_step(p_prev float8, p_x float8)
RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN p_prev IS NULL THEN NULL WHEN p_x >= p_prev THEN p_x - p_prev ELSE p_x END $$;

-- State rows of the raw samples in the ranges [lo, hi) of the given series (bucket-aligned
-- ranges give whole buckets), one per bucket with samples. Through the primary key, per range.
-- p_decode: also the samples of compressed raw days, decoded (a read cannot restore them as
-- the refresh does before it calls this: 69_state_fresh.sql); off, that branch is not run.
DROP FUNCTION IF EXISTS ts_state_of_samples(bigint[], timestamptz[], timestamptz[], interval,
                                            interval);
CREATE OR REPLACE FUNCTION ts_state_of_samples(
    p_series bigint[], p_lo timestamptz[], p_hi timestamptz[], p_width interval,
    p_gap interval, p_decode boolean DEFAULT false)
RETURNS SETOF ts_state_1m
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    WITH s AS (
        SELECT k.s AS series_id, m.ts, coalesce(m.v_text, m.v_bool::text) AS v, m.v_num AS x,
               date_bin(p_width, m.ts, timestamptz '2000-01-03 00:00:00+00') AS bucket
        FROM unnest(p_series, p_lo, p_hi) AS k(s, lo, hi)
        CROSS JOIN LATERAL (
            SELECT m.ts, m.v_num, m.v_bool, m.v_text FROM ts_measure m
            WHERE m.series_id = k.s AND m.ts >= k.lo AND m.ts < k.hi
            UNION ALL
            SELECT z.ts, z.v_num, z.v_bool, z.v_text FROM ts_measure_zrows z
            WHERE p_decode AND z.series_id = k.s AND z.seg_start > k.lo - interval '1 day'
              AND z.seg_start < k.hi AND z.ts >= k.lo AND z.ts < k.hi) m
    ), w AS (
        SELECT s.*, lag(s.ts) OVER o AS prev_ts, lag(s.v) OVER o AS prev_v,
               lag(s.x) OVER o AS prev_x, lead(s.ts) OVER o AS next_ts
        FROM s WINDOW o AS (PARTITION BY s.series_id, s.bucket ORDER BY s.ts)
    ), held AS (
        SELECT h.series_id, h.bucket, jsonb_object_agg(h.v, h.secs) AS time_in,
               count(*) AS keys
        FROM (SELECT w.series_id, w.bucket, w.v,
                     sum(extract(epoch FROM least(w.next_ts - w.ts, p_gap)))::float8 AS secs
              FROM w WHERE w.next_ts IS NOT NULL AND w.v IS NOT NULL
              GROUP BY 1, 2, 3) h
        GROUP BY 1, 2
    )
    -- First and last values: the rows without a previous or a next one in their bucket (the
    -- window has ordered them already; an ordered aggregate would sort each bucket again).
    SELECT a.series_id, a.bucket, a.n, a.t_first, a.t_last, a.s_first, a.s_last, a.changes,
           CASE WHEN h.keys > 16 THEN ts_state_fold(h.time_in) ELSE coalesce(h.time_in, '{}') END,
           a.v_first, a.v_last, a.delta
    FROM (SELECT w.series_id, w.bucket, count(*)::integer AS n, min(w.ts) AS t_first,
                 max(w.ts) AS t_last,
                 min(w.v) FILTER (WHERE w.prev_ts IS NULL) AS s_first,
                 min(w.v) FILTER (WHERE w.next_ts IS NULL) AS s_last,
                 (count(*) FILTER (WHERE w.prev_v IS DISTINCT FROM w.v
                                     AND w.prev_v IS NOT NULL))::integer AS changes,
                 min(w.x) FILTER (WHERE w.prev_ts IS NULL) AS v_first,
                 min(w.x) FILTER (WHERE w.next_ts IS NULL) AS v_last,
                 CASE WHEN count(w.x) > 0
                      THEN coalesce(sum(ts_counter_step(w.prev_x, w.x)), 0) END AS delta
          FROM w GROUP BY 1, 2) a
    LEFT JOIN held h ON h.series_id = a.series_id AND h.bucket = a.bucket
$$;

-- State rows of a coarser tier from the rows of the finer one (`p_source`, a ts_state_<tier>
-- relation) in the ranges [lo, hi): consecutive finer rows are consecutive stretches of
-- samples, so the coarse bucket's changes and holds are the finer ones plus those between one
-- finer row's last sample and the next one's first. Exact.
CREATE OR REPLACE FUNCTION ts_state_of_rows(
    p_source text, p_series bigint[], p_lo timestamptz[], p_hi timestamptz[], p_width interval,
    p_gap interval)
RETURNS SETOF ts_state_1m
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
    WITH s AS (
        SELECT f.*, date_bin($4, f.bucket, timestamptz '2000-01-03 00:00:00+00') AS b
        FROM unnest($1, $2, $3) AS k(s, lo, hi)
        -- One primary-key range scan per range, in the one partition it prunes to at run time
        -- (OFFSET 0 keeps it a subquery: flattened, the planner hash-joined every row of the
        -- series' partitions against every range, 23 s for a month's 8,640 late 5m keys).
        CROSS JOIN LATERAL (
            SELECT f.* FROM %I f
            WHERE f.series_id = k.s AND f.bucket >= k.lo AND f.bucket < k.hi OFFSET 0) f
    ), w AS (
        SELECT s.*, lag(s.s_last) OVER o AS prev_last, lag(s.t_last) OVER o AS prev_t_last,
               lag(s.v_last) OVER o AS prev_v_last, lead(s.bucket) OVER o AS next_bucket
        FROM s WINDOW o AS (PARTITION BY s.series_id, s.b ORDER BY s.bucket)
    ), held AS (
        SELECT h.series_id, h.b, jsonb_object_agg(h.v, h.secs) AS time_in, count(*) AS keys
        FROM (SELECT p.series_id, p.b, p.v, sum(p.secs)::float8 AS secs
              FROM (SELECT w.series_id, w.b, e.key AS v, e.value::float8 AS secs
                    FROM w CROSS JOIN LATERAL jsonb_each_text(w.time_in) e
                    UNION ALL
                    SELECT w.series_id, w.b, w.prev_last,
                           extract(epoch FROM least(w.t_first - w.prev_t_last, $5))::float8
                    FROM w WHERE w.prev_last IS NOT NULL) p
              GROUP BY 1, 2, 3) h
        GROUP BY 1, 2
    )
    SELECT a.series_id, a.b, a.n, a.t_first, a.t_last, a.s_first, a.s_last, a.changes,
           CASE WHEN h.keys > 16 THEN ts_state_fold(h.time_in) ELSE coalesce(h.time_in, '{}') END,
           a.v_first, a.v_last, a.delta
    FROM (SELECT w.series_id, w.b, sum(w.n)::integer AS n, min(w.t_first) AS t_first,
                 max(w.t_last) AS t_last,
                 min(w.s_first) FILTER (WHERE w.prev_t_last IS NULL) AS s_first,
                 min(w.s_last) FILTER (WHERE w.next_bucket IS NULL) AS s_last,
                 (sum(w.changes) + count(*) FILTER (WHERE w.prev_last IS DISTINCT FROM w.s_first
                                                     AND w.prev_last IS NOT NULL))::integer
                     AS changes,
                 min(w.v_first) FILTER (WHERE w.prev_t_last IS NULL) AS v_first,
                 min(w.v_last) FILTER (WHERE w.next_bucket IS NULL) AS v_last,
                 CASE WHEN count(w.delta) > 0
                      THEN sum(w.delta)
                           + coalesce(sum(ts_counter_step(w.prev_v_last, w.v_first)), 0) END
                     AS delta
          FROM w GROUP BY 1, 2) a
    LEFT JOIN held h ON h.series_id = a.series_id AND h.b = a.b
    $q$, p_source)
    USING p_series, p_lo, p_hi, p_width, p_gap;
END
$$;

-- The state rows of a tier for the ranges [lo, hi) of the given series, from its source.
CREATE OR REPLACE FUNCTION ts_state_compute(
    p_tier text, p_series bigint[], p_lo timestamptz[], p_hi timestamptz[])
RETURNS SETOF ts_state_1m
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE := ts_rollup_tier(p_tier);
BEGIN
    IF v_tier.source_tier = 'raw' THEN
        RETURN QUERY SELECT * FROM ts_state_of_samples(p_series, p_lo, p_hi, v_tier.bucket_width,
                                                       ts_state_max_gap());
    ELSE
        RETURN QUERY SELECT * FROM ts_state_of_rows('ts_state_' || v_tier.source_tier, p_series,
                                                    p_lo, p_hi, v_tier.bucket_width,
                                                    ts_state_max_gap());
    END IF;
END
$$;

-- Refresh the state buckets of one chunk of a tier: the claimed keys (p_series, p_bucket) of
-- boolean and text series, and every bucket of [p_region_lo, p_region_hi) (the region above the
-- invalidation threshold, whose writes were not logged; NULL: none). Same rules as the numeric
-- rows: a bucket before the source's expiry is only created when absent, never overwritten or
-- deleted; every changed bucket below the next tier's threshold is logged for the next tier.
-- Returns the rows written or deleted.
CREATE OR REPLACE FUNCTION ts_state_refresh(
    p_tier text, p_series bigint[], p_bucket timestamptz[], p_region_lo timestamptz,
    p_region_hi timestamptz, p_next_threshold timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
    v_tier ts_tier%ROWTYPE;
    v_source ts_tier%ROWTYPE;
    v_next ts_tier%ROWTYPE;
    v_key_series bigint[];
    v_key_bucket timestamptz[];
    v_lo timestamptz[];
    v_hi timestamptz[];
    v_region_series bigint[];
    v_range_series bigint[];
    v_nothing boolean;
    v_parts timestamptz[];
    v_changed bigint;
BEGIN
    -- An all-numeric fleet has no state series: one probe of the partial index, and done.
    IF NOT EXISTS (SELECT FROM ts_series s WHERE s.kind <> 'numeric' OR s.counter) THEN
        RETURN 0;
    END IF;
    v_tier := ts_rollup_tier(p_tier);
    SELECT * INTO STRICT v_source FROM ts_tier WHERE tier = v_tier.source_tier;
    SELECT * INTO v_next FROM ts_tier WHERE source_tier = p_tier;
    -- The claimed keys of boolean, text and counter series (other numeric series have no
    -- state rows).
    SELECT array_agg(k.s), array_agg(k.b) INTO v_key_series, v_key_bucket
    FROM (SELECT DISTINCT k.s, k.b FROM unnest(p_series, p_bucket) AS k(s, b)
          JOIN ts_series s ON s.series_id = k.s AND (s.kind <> 'numeric' OR s.counter)) k;
    -- Keys in compressed ranges (58_state_compress.sql): restore the segments about to be
    -- written and those of the finer tier's rows about to be read; the next compression job
    -- compresses them again. The shared lock keeps the finer tier's compression from moving
    -- rows between the look and the read (its own lock is held by the caller, the refresh).
    IF v_key_series IS NOT NULL THEN
        -- (only a partition that has ended can be compressed: late keys of the current one,
        -- the steady state, take no lock)
        IF v_source.tier <> 'raw'
           AND EXISTS (SELECT FROM unnest(v_key_bucket) b
                       WHERE ts_partition_start(v_source.tier, b) + v_source.partition_width
                             <= now()) THEN
            PERFORM pg_advisory_xact_lock_shared(hashtext('traksense.compress.' || v_source.tier));
        END IF;
        -- Each tier's lock only when it has segments there: target first, then the finer tier,
        -- the order of the numeric restore (53_refresh_chunk.sql) and of compression.
        IF EXISTS (SELECT FROM unnest(v_key_series, v_key_bucket) AS k(s, b)
                   JOIN ts_state_z z ON z.tier = p_tier AND z.series_id = k.s
                                    AND z.seg_start = ts_partition_start(p_tier, k.b)) THEN
            PERFORM ts_state_restore(p_tier, v_key_series, v_key_bucket);
        END IF;
        IF v_source.tier <> 'raw'
           AND EXISTS (SELECT FROM unnest(v_key_series, v_key_bucket) AS k(s, b)
                       JOIN ts_state_z z ON z.tier = v_source.tier AND z.series_id = k.s
                                        AND z.seg_start = ts_partition_start(v_source.tier, k.b)) THEN
            PERFORM ts_state_restore(v_source.tier, v_key_series, v_key_bucket,
                                     v_tier.bucket_width);
        END IF;
    END IF;
    -- The region's series: those with source rows there (state series only, through the
    -- partial index ts_series_state, or the finer tier's bucket index).
    IF p_region_lo IS NOT NULL AND p_region_lo < p_region_hi THEN
        IF v_source.tier = 'raw' THEN
            SELECT array_agg(s.series_id) INTO v_region_series
            FROM ts_series s
            WHERE (s.kind <> 'numeric' OR s.counter) AND EXISTS (
                SELECT FROM ts_measure m
                WHERE m.series_id = s.series_id AND m.ts >= p_region_lo AND m.ts < p_region_hi);
        ELSE
            EXECUTE format('SELECT array_agg(DISTINCT f.series_id) FROM %I f
                            WHERE f.bucket >= $1 AND f.bucket < $2', 'ts_state_' || v_source.tier)
            INTO v_region_series USING p_region_lo, p_region_hi;
        END IF;
    END IF;
    IF v_key_series IS NULL AND v_region_series IS NULL THEN
        -- No state key and no state source in the region (an all-numeric fleet's every chunk):
        -- done, unless a state row of the region lost its source (deleted samples).
        IF p_region_lo IS NULL THEN
            RETURN 0;
        END IF;
        EXECUTE format('SELECT NOT EXISTS (SELECT FROM %I t WHERE t.bucket >= $1 AND t.bucket < $2)',
                       'ts_state_' || p_tier)
        INTO v_nothing USING p_region_lo, p_region_hi;
        IF v_nothing THEN
            RETURN 0;
        END IF;
    END IF;
    -- What to recompute: each key's bucket outside the region, and the whole region of each
    -- series with source rows there.
    SELECT array_agg(r.s), array_agg(r.lo), array_agg(r.hi) INTO v_range_series, v_lo, v_hi
    FROM (SELECT k.s, k.b AS lo, k.b + v_tier.bucket_width AS hi
          FROM unnest(v_key_series, v_key_bucket) AS k(s, b)
          WHERE p_region_lo IS NULL OR NOT (k.b >= p_region_lo AND k.b < p_region_hi)
          UNION ALL
          SELECT s, p_region_lo, p_region_hi FROM unnest(v_region_series) AS s) r;

    -- Partitions for every bucket about to be written: a range of boolean and text points only
    -- has no numeric rows whose refresh made them (10_partitions.sql creates both).
    IF v_region_series IS NOT NULL THEN
        PERFORM ts_ensure_partitions_for(p_tier, v_source.tier, p_region_lo, p_region_hi);
    END IF;
    SELECT array_agg(d.lo) INTO v_parts
    FROM (SELECT DISTINCT ts_partition_start(p_tier, b) AS lo FROM unnest(v_key_bucket) b
          UNION
          SELECT p.lo FROM ts_partition p
          WHERE v_region_series IS NOT NULL AND p.tier = p_tier
            AND p.hi > p_region_lo AND p.lo < p_region_hi) d
    WHERE to_regclass(ts_state_partition(p_tier, d.lo)) IS NULL;
    IF v_parts IS NOT NULL THEN
        PERFORM ts_create_partitions(p_tier, v_parts);
    END IF;

    EXECUTE format($q$
        WITH r AS (
            SELECT * FROM ts_state_compute($1, $2, $3, $4)
        ), upserted AS (
            INSERT INTO %1$I AS t
            SELECT * FROM r
            ON CONFLICT (series_id, bucket) DO UPDATE
            SET n = excluded.n, t_first = excluded.t_first, t_last = excluded.t_last,
                s_first = excluded.s_first, s_last = excluded.s_last,
                changes = excluded.changes, time_in = excluded.time_in,
                v_first = excluded.v_first, v_last = excluded.v_last, delta = excluded.delta
            WHERE t.bucket >= $7
              AND (t.n, t.t_first, t.t_last, t.s_first, t.s_last, t.changes, t.time_in,
                   t.v_first, t.v_last, t.delta)
                  IS DISTINCT FROM (excluded.n, excluded.t_first, excluded.t_last,
                                    excluded.s_first, excluded.s_last, excluded.changes,
                                    excluded.time_in, excluded.v_first, excluded.v_last,
                                    excluded.delta)
            RETURNING t.series_id, t.bucket
        ), emptied_keys AS (
            -- (keys inside the region are the region's: disjoint from emptied_region)
            DELETE FROM %1$I t
            USING unnest($5::bigint[], $6::timestamptz[]) AS k(s, b)
            WHERE t.series_id = k.s AND t.bucket = k.b AND t.bucket >= $7
              AND NOT (k.b >= $8 AND k.b < $9)
              AND NOT EXISTS (SELECT FROM r WHERE r.series_id = t.series_id
                                              AND r.bucket = t.bucket)
            RETURNING t.series_id, t.bucket
        ), emptied_region AS (
            DELETE FROM %1$I t
            WHERE t.bucket >= $8 AND t.bucket < $9 AND t.bucket >= $7
              AND NOT EXISTS (SELECT FROM r WHERE r.series_id = t.series_id
                                              AND r.bucket = t.bucket)
            RETURNING t.series_id, t.bucket
        ), changed AS (
            SELECT * FROM upserted UNION ALL SELECT * FROM emptied_keys
            UNION ALL SELECT * FROM emptied_region
        ), next_tier AS (
            INSERT INTO ts_invalidation (tier, series_id, bucket)
            SELECT DISTINCT $10::text, c.series_id,
                   date_bin($11::interval, c.bucket, %2$L::timestamptz)
            FROM changed c
            WHERE $10 IS NOT NULL AND date_bin($11::interval, c.bucket, %2$L::timestamptz) < $12
        )
        SELECT count(*) FROM changed
    $q$, 'ts_state_' || p_tier, v_origin)
    INTO v_changed
    USING p_tier, v_range_series, v_lo, v_hi, v_key_series, v_key_bucket, v_source.expired_before,
          coalesce(p_region_lo, 'infinity'), coalesce(p_region_hi, 'infinity'),
          v_next.tier, v_next.bucket_width, coalesce(p_next_threshold, 'infinity');
    RETURN v_changed;
END
$$;
COMMENT ON FUNCTION ts_state_refresh(text, bigint[], timestamptz[], timestamptz, timestamptz,
                                     timestamptz) IS
    'Internal (ts_refresh_chunk): recompute the state rollups of claimed keys and of a region.';

REVOKE ALL ON FUNCTION ts_state_refresh(text, bigint[], timestamptz[], timestamptz, timestamptz,
                                        timestamptz) FROM PUBLIC;

-- Retention of a tier's state rows (traksense/rollups/retention.py, after the tier's numeric
-- partitions were dropped): every sibling partition (0011_state_storage.sql) that ends at or
-- before the tier's expired_before is dropped, and the compressed segments there deleted.
-- A transaction of its own, after the numeric drop's: DROP of a partition locks its parent, and
-- two parents locked in one transaction could deadlock with a reader of both (a POST
-- /data/query of numeric and state series). A run that fails here (a lock not granted in time)
-- leaves the rows to the next; until then they are only rows past retention still answered.
-- Returns the partitions dropped.
DROP FUNCTION IF EXISTS ts_state_expire(text, timestamptz, timestamptz);
CREATE OR REPLACE FUNCTION ts_state_expire(p_tier text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE;
    v_part text;
    v_dropped integer := 0;
BEGIN
    SELECT * INTO v_tier FROM ts_tier WHERE tier = p_tier;
    IF p_tier NOT IN ('1m', '5m', '1h') OR NOT isfinite(v_tier.expired_before) THEN
        RETURN 0;
    END IF;
    FOR v_part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = to_regclass('ts_state_' || p_tier)
          -- (the name says where the partition starts: ts_state_partition)
          AND to_timestamp(right(c.relname, 8), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC'
              + v_tier.partition_width <= v_tier.expired_before
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', v_part);
        v_dropped := v_dropped + 1;
    END LOOP;
    DELETE FROM ts_state_z z
    WHERE z.tier = p_tier AND z.seg_start + v_tier.partition_width <= v_tier.expired_before;
    RETURN v_dropped;
END
$$;
COMMENT ON FUNCTION ts_state_expire(text) IS
    'Internal (retention): drop the state partitions of a tier past its expired_before, and '
    'their compressed segments; returns the partitions dropped. 54_state_refresh.sql.';
REVOKE ALL ON FUNCTION ts_state_expire(text) FROM PUBLIC;
