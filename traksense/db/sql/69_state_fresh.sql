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
-- segments (58_state_compress.sql), unordered.
CREATE OR REPLACE FUNCTION ts_state_stored(
    p_tier text, p_series bigint, p_lo timestamptz, p_hi timestamptz)
RETURNS SETOF ts_state_1m
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT * FROM %I s WHERE s.series_id = $1 AND s.bucket >= $2 AND s.bucket < $3',
        'ts_state_' || p_tier)
    USING p_series, p_lo, p_hi;
    RETURN QUERY SELECT * FROM ts_state_z_rows(p_tier, p_series, p_lo, p_hi);
END
$$;
COMMENT ON FUNCTION ts_state_stored(text, bigint, timestamptz, timestamptz) IS
    'Internal: the stored state rows of a series with lo <= bucket < hi, compressed ones '
    'included, unordered. 69_state_fresh.sql.';

CREATE OR REPLACE FUNCTION ts_state_rows(
    p_tier text, p_series bigint, p_lo timestamptz, p_end timestamptz, p_fresh boolean)
RETURNS SETOF ts_state_1m
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_width interval;
    v_stale timestamptz[];
    v_decode boolean;
BEGIN
    IF p_lo >= p_end THEN
        RETURN;
    END IF;
    IF p_fresh THEN
        v_stale := ARRAY(
            SELECT b FROM unnest(ts_stale_buckets(p_tier, p_series, p_lo, p_end)) b
            WHERE b >= (SELECT t.expired_before FROM ts_tier t WHERE t.tier = 'raw'));
    END IF;
    IF coalesce(cardinality(v_stale), 0) = 0 THEN
        RETURN QUERY SELECT * FROM ts_state_stored(p_tier, p_series, p_lo, p_end) s
                     ORDER BY s.bucket;
        RETURN;
    END IF;
    v_width := (SELECT t.bucket_width FROM ts_tier t WHERE t.tier = p_tier);
    -- Late data into a raw day compressed again before the refresh ran: decode that day.
    v_decode := EXISTS (SELECT FROM ts_measure_z z
                        WHERE z.series_id = p_series
                          AND z.seg_start IN (SELECT ts_partition_start('raw', b)
                                              FROM unnest(v_stale) b));
    RETURN QUERY
        SELECT u.* FROM (
            SELECT s.* FROM ts_state_stored(p_tier, p_series, p_lo, p_end) s
            WHERE NOT (s.bucket = ANY (v_stale))
            UNION ALL
            SELECT f.* FROM ts_state_of_samples(array_fill(p_series, ARRAY[cardinality(v_stale)]),
                                                v_stale,
                                                ARRAY(SELECT b + v_width FROM unnest(v_stale) b),
                                                v_width, ts_state_max_gap(), v_decode) f
        ) u ORDER BY u.bucket;
END
$$;
COMMENT ON FUNCTION ts_state_rows(text, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: the stored state rows of a series with lo <= bucket < end, in order, the stale '
    'ones recomputed from raw (fresh = true). 69_state_fresh.sql.';

-- The bucket of a series' latest (p_latest) or earliest pending key that makes a state bucket of
-- the tier stale (a key of the tier or a finer one, below its tier's watermark, not older than
-- raw's expired_before: the keys ts_state_rows recomputes), among buckets starting before
-- p_before or at or after p_from; NULL when there is none. One index probe
-- (ts_invalidation_series) in the usual case of no pending key.
CREATE OR REPLACE FUNCTION ts_state_pending(
    p_tier text, p_series bigint, p_from timestamptz, p_before timestamptz, p_latest boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_width constant interval := (SELECT t.bucket_width FROM ts_tier t WHERE t.tier = p_tier);
    v_tiers constant text[] := CASE p_tier WHEN '1m' THEN '{1m}'::text[]
                                           WHEN '5m' THEN '{1m,5m}'::text[]
                                           ELSE '{1m,5m,1h}'::text[] END;
    -- Raw's expired_before is a day boundary, so a key is at or after it when its bucket is.
    v_expired constant timestamptz := (SELECT t.expired_before FROM ts_tier t WHERE t.tier = 'raw');
    v_key timestamptz;
BEGIN
    -- A key of a finer tier names the tier's bucket it lies in: a bucket starts before
    -- p_before when its keys lie before p_before's bucket ceiling, and at or after p_from
    -- when they lie at or after p_from's.
    IF p_latest THEN
        SELECT i.bucket INTO v_key FROM ts_invalidation i JOIN ts_tier kt ON kt.tier = i.tier
        WHERE i.series_id = p_series AND i.bucket < ts_bucket_ceil(v_width, p_before)
          AND i.bucket >= v_expired AND i.tier = ANY (v_tiers) AND i.bucket < kt.watermark
        ORDER BY i.bucket DESC LIMIT 1;
    ELSE
        SELECT i.bucket INTO v_key FROM ts_invalidation i JOIN ts_tier kt ON kt.tier = i.tier
        WHERE i.series_id = p_series AND i.bucket >= ts_bucket_ceil(v_width, p_from)
          AND i.bucket >= v_expired AND i.tier = ANY (v_tiers) AND i.bucket < kt.watermark
        ORDER BY i.bucket LIMIT 1;
    END IF;
    RETURN date_bin(v_width, v_key, timestamptz '2000-01-03 00:00:00+00');
END
$$;
COMMENT ON FUNCTION ts_state_pending(text, bigint, timestamptz, timestamptz, boolean) IS
    'Internal: the tier bucket of a series'' latest pending key before an instant, or earliest '
    'from one (NULL: none). 69_state_fresh.sql.';

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
        EXECUTE format('SELECT max(s.bucket) FROM %I s WHERE s.series_id = $1 AND s.bucket < $2',
                       'ts_state_' || p_tier)
        INTO v_stored USING p_series, p_before;
        v_from := greatest(v_stored, ts_state_z_bound(p_tier, p_series, NULL, p_before, true));
        IF p_fresh THEN
            v_from := greatest(v_from, ts_state_pending(p_tier, p_series, NULL, p_before, true));
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
        EXECUTE format('SELECT min(s.bucket) FROM %I s
                        WHERE s.series_id = $1 AND s.bucket >= $2 AND s.bucket < $3',
                       'ts_state_' || p_tier)
        INTO v_first USING p_series, p_from, p_until;
        v_first := least(v_first, ts_state_z_bound(p_tier, p_series, p_from, NULL, false));
        IF p_fresh THEN
            v_first := least(v_first, ts_state_pending(p_tier, p_series, p_from, NULL, false));
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
REVOKE ALL ON FUNCTION ts_state_rows(text, bigint, timestamptz, timestamptz, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_pending(text, bigint, timestamptz, timestamptz, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_prev(text, bigint, timestamptz, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_state_next(text, bigint, timestamptz, timestamptz, boolean) FROM PUBLIC;
