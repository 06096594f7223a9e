-- Read-your-writes for the state rollups (boolean and text points, counters' deltas): the stored
-- state rows a read takes below the watermark, with the buckets a pending invalidation has made
-- stale recomputed on the fly, as 65_read_fresh.sql does for the numeric rows. Used by
-- ts_read_state_<tier> (69_read_state.sql) and ts_read_counter_<tier> (69_read_counter.sql).
--
-- Stale buckets are those of ts_stale_buckets (a pending key of the tier or a finer one inside
-- the bucket, below its tier's watermark). A state row is a function of its bucket's samples
-- alone, and the coarser tiers' rows compose exactly (ts_state_of_rows), so a stale bucket of any
-- tier is recomputed straight from the raw samples, compressed days decoded. Only while raw still
-- covers it: a stale bucket older than raw's expired_before (late data written more than the raw
-- retention back) keeps its stored row until the refresh, which recomputes it from the finer tier.
-- p_fresh = false (materialized_only) returns the stored rows as they are.

-- The stored state rows of a series with lo <= bucket < hi: the tier's table and its compressed
-- segments (58_state_compress.sql), unordered. A SQL function without SET clauses, so that the
-- planner inlines it into the caller's statement (the other tiers' branches fall away as
-- one-time filters), instead of filling a tuplestore with every row first.
CREATE OR REPLACE FUNCTION ts_state_stored(p_tier text, p_series bigint, p_lo timestamptz, p_hi timestamptz)
RETURNS SETOF ts_state_1m
LANGUAGE sql STABLE
AS $$
    SELECT * FROM public.ts_state_1m s
    WHERE p_tier = '1m' AND s.series_id = p_series AND s.bucket >= p_lo AND s.bucket < p_hi
    UNION ALL
    SELECT * FROM public.ts_state_5m s
    WHERE p_tier = '5m' AND s.series_id = p_series AND s.bucket >= p_lo AND s.bucket < p_hi
    UNION ALL
    SELECT * FROM public.ts_state_1h s
    WHERE p_tier = '1h' AND s.series_id = p_series AND s.bucket >= p_lo AND s.bucket < p_hi
    UNION ALL
    SELECT * FROM public.ts_state_z_rows(p_tier, p_series, p_lo, p_hi)
$$;
COMMENT ON FUNCTION ts_state_stored(text, bigint, timestamptz, timestamptz) IS
    'Internal: the stored state rows of a series with lo <= bucket < hi, compressed ones '
    'included, unordered. 69_state_fresh.sql.';

-- The buckets of [lo, end) whose stored state row a pending invalidation made stale and raw
-- still covers (NULL: none; ts_state_rows says why).
CREATE OR REPLACE FUNCTION ts_state_stale(
    p_tier text, p_series bigint, p_lo timestamptz, p_end timestamptz)
RETURNS timestamptz[]
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT nullif(ARRAY(
        SELECT b FROM unnest(ts_stale_buckets(p_tier, p_series, p_lo, p_end)) b
        WHERE b >= (SELECT t.expired_before FROM ts_tier t WHERE t.tier = 'raw')), '{}')
$$;
COMMENT ON FUNCTION ts_state_stale(text, bigint, timestamptz, timestamptz) IS
    'Internal: the stale state buckets of a series in [lo, end) that raw still covers. '
    '69_state_fresh.sql.';

-- The fresh state rows of a series with lo <= bucket < end, unordered, given its stale buckets
-- (ts_state_stale): the stored ones, the stale ones recomputed from raw (compressed raw days
-- decoded when p_decode). Inlined into callers, like ts_state_stored.
CREATE OR REPLACE FUNCTION ts_state_fresh(
    p_tier text, p_series bigint, p_lo timestamptz, p_end timestamptz, p_stale timestamptz[],
    p_width interval, p_decode boolean)
RETURNS SETOF ts_state_1m
LANGUAGE sql STABLE
AS $$
    SELECT s.* FROM public.ts_state_stored(p_tier, p_series, p_lo, p_end) s
    WHERE p_stale IS NULL OR NOT (s.bucket = ANY (p_stale))
    UNION ALL
    SELECT f.* FROM public.ts_state_of_samples(
        array_fill(p_series, ARRAY[coalesce(cardinality(p_stale), 0)]), p_stale,
        ARRAY(SELECT b + p_width FROM unnest(p_stale) b), p_width,
        public.ts_state_max_gap(), p_decode) f
    WHERE p_stale IS NOT NULL
$$;
COMMENT ON FUNCTION ts_state_fresh(text, bigint, timestamptz, timestamptz, timestamptz[],
                                   interval, boolean) IS
    'Internal: the stored state rows of a series in [lo, end), the stale ones recomputed, '
    'unordered. 69_state_fresh.sql.';

-- Whether a read of stale buckets must decode compressed raw days: late data into a raw day
-- compressed again before the refresh ran.
CREATE OR REPLACE FUNCTION ts_state_decode(p_series bigint, p_stale timestamptz[])
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT p_stale IS NOT NULL AND EXISTS (
        SELECT FROM ts_measure_z z
        WHERE z.series_id = p_series
          AND z.seg_start IN (SELECT ts_partition_start('raw', b) FROM unnest(p_stale) b))
$$;
COMMENT ON FUNCTION ts_state_decode(bigint, timestamptz[]) IS
    'Internal: whether stale state buckets lie in compressed raw days. 69_state_fresh.sql.';

CREATE OR REPLACE FUNCTION ts_state_rows(
    p_tier text, p_series bigint, p_lo timestamptz, p_end timestamptz, p_fresh boolean)
RETURNS SETOF ts_state_1m
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_stale timestamptz[];
BEGIN
    IF p_lo >= p_end THEN
        RETURN;
    END IF;
    IF p_fresh THEN
        v_stale := ts_state_stale(p_tier, p_series, p_lo, p_end);
    END IF;
    RETURN QUERY
        SELECT u.* FROM ts_state_fresh(p_tier, p_series, p_lo, p_end, v_stale,
                                       (SELECT t.bucket_width FROM ts_tier t WHERE t.tier = p_tier),
                                       ts_state_decode(p_series, v_stale)) u
        ORDER BY u.bucket;
END
$$;
COMMENT ON FUNCTION ts_state_rows(text, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: the stored state rows of a series with lo <= bucket < end, in order, the stale '
    'ones recomputed from raw (fresh = true). 69_state_fresh.sql.';

DROP FUNCTION IF EXISTS ts_state_pending(text, bigint, timestamptz, timestamptz, boolean);

-- The latest bucket of a series in the tier's table before p_before (p_latest), or the earliest
-- in [p_from, p_before); NULL when there is none. The partition holding the instant and the one
-- beside it first, the rest only when they hold nothing: planned unbounded, the statement
-- opens and locks every partition of the tier on that side (a year of them at 1m).
CREATE OR REPLACE FUNCTION ts_state_table_bound(
    p_tier text, p_series bigint, p_from timestamptz, p_before timestamptz, p_latest boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_width constant interval := (SELECT t.partition_width FROM ts_tier t WHERE t.tier = p_tier);
    v_sql constant text := format(
        'SELECT %s(s.bucket) FROM %I s WHERE s.series_id = $1 AND s.bucket >= $2 AND s.bucket < $3',
        CASE WHEN p_latest THEN 'max' ELSE 'min' END, 'ts_state_' || p_tier);
    v_near timestamptz;
    v_found timestamptz;
BEGIN
    IF p_latest THEN  -- [near, before), then [-infinity, near)
        v_near := ts_partition_start(p_tier, p_before - interval '1 microsecond') - v_width;
        EXECUTE v_sql INTO v_found USING p_series, v_near, p_before;
        IF v_found IS NULL THEN
            EXECUTE v_sql INTO v_found USING p_series, '-infinity'::timestamptz, v_near;
        END IF;
    ELSE  -- [from, near), then [near, before)
        v_near := least(p_before, ts_partition_start(p_tier, p_from) + 2 * v_width);
        EXECUTE v_sql INTO v_found USING p_series, p_from, v_near;
        IF v_found IS NULL AND v_near < p_before THEN
            EXECUTE v_sql INTO v_found USING p_series, v_near, p_before;
        END IF;
    END IF;
    RETURN v_found;
END
$$;
COMMENT ON FUNCTION ts_state_table_bound(text, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: a series'' latest state bucket in the tier''s table before an instant, or '
    'earliest in a range. 69_state_fresh.sql.';

-- The last fresh state row before p_before (none when the series has none): the stored one, or
-- one a late write created or moved, however far back (a gateway's backfilled history before a
-- series' first stored row). The candidates are the latest stored bucket and the latest bucket
-- with a pending key; the later one is read fresh, and when its recompute leaves no row (a
-- delete), the search goes on below it.
CREATE OR REPLACE FUNCTION ts_state_prev(
    p_tier text, p_series bigint, p_before timestamptz, p_fresh boolean)
RETURNS SETOF ts_state_1m
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_stored timestamptz;
    v_from timestamptz;
    r ts_state_1m;
BEGIN
    LOOP
        EXIT WHEN p_before IS NULL;
        v_stored := ts_state_table_bound(p_tier, p_series, NULL, p_before, true);
        v_from := greatest(v_stored, ts_state_z_bound(p_tier, p_series, NULL, p_before, true));
        IF p_fresh THEN
            -- the latest stale bucket: one index probe when none is pending
            v_from := greatest(v_from, (SELECT max(b) FROM unnest(
                ts_state_stale(p_tier, p_series, '-infinity', p_before)) b));
        END IF;
        EXIT WHEN v_from IS NULL;
        SELECT f.* INTO r FROM ts_state_rows(p_tier, p_series, v_from, p_before, p_fresh) f
        ORDER BY f.bucket DESC LIMIT 1;
        IF r.series_id IS NOT NULL THEN
            RETURN NEXT r;
            EXIT;
        END IF;
        p_before := v_from;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ts_state_prev(text, bigint, timestamptz, boolean) IS
    'Internal: the last (fresh) state row of a series before an instant. 69_state_fresh.sql.';

-- The first fresh state row in [p_from, p_until) (none when there is none): as ts_state_prev,
-- from the earliest stored bucket and the earliest bucket with a pending key on.
CREATE OR REPLACE FUNCTION ts_state_next(
    p_tier text, p_series bigint, p_from timestamptz, p_until timestamptz, p_fresh boolean)
RETURNS SETOF ts_state_1m
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_width constant interval := (SELECT t.bucket_width FROM ts_tier t WHERE t.tier = p_tier);
    v_first timestamptz;
    v_to timestamptz;
    r ts_state_1m;
BEGIN
    LOOP
        EXIT WHEN p_from >= p_until;
        v_first := ts_state_table_bound(p_tier, p_series, p_from, p_until, false);
        v_first := least(v_first, ts_state_z_bound(p_tier, p_series, p_from, NULL, false));
        IF p_fresh THEN
            v_first := least(v_first, (SELECT min(b) FROM unnest(
                ts_state_stale(p_tier, p_series, p_from, 'infinity')) b));
        END IF;
        EXIT WHEN v_first IS NULL OR v_first >= p_until;
        v_to := least(p_until, v_first + v_width);
        SELECT f.* INTO r FROM ts_state_rows(p_tier, p_series, p_from, v_to, p_fresh) f
        ORDER BY f.bucket LIMIT 1;
        IF r.series_id IS NOT NULL THEN
            RETURN NEXT r;
            EXIT;
        END IF;
        p_from := v_to;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ts_state_next(text, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: the first (fresh) state row of a series in [from, until). 69_state_fresh.sql.';

REVOKE ALL ON FUNCTION ts_state_stored(text, bigint, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_stale(text, bigint, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_fresh(text, bigint, timestamptz, timestamptz, timestamptz[], interval,
                                      boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_decode(bigint, timestamptz[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_table_bound(text, bigint, timestamptz, timestamptz, boolean)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_rows(text, bigint, timestamptz, timestamptz, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_prev(text, bigint, timestamptz, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_next(text, bigint, timestamptz, timestamptz, boolean) FROM PUBLIC;
