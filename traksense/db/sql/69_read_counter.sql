-- Counters (0009_state_rollups.sql): marking a series, and reading its rollups with `delta`.
--
--   ts_set_counter(series, on)            owner only: mark or unmark a numeric series
--   ts_read_counter_<tier>(series, ...)   ts_read_rollup_<tier>'s rows with each bucket's delta

-- Mark a numeric series as a counter (or not). Its state rows are computed by the next refresh
-- of each tier: every 1m bucket its raw samples can still give is invalidated (older buckets
-- keep no delta: their samples are gone). Unmarking deletes them. Returns the buckets
-- invalidated or the rows deleted.
CREATE OR REPLACE FUNCTION ts_set_counter(p_series bigint, p_counter boolean)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_kind text;
    v_first timestamptz;
    v_last timestamptz;
    v_count bigint := 0;
    v_n bigint;
BEGIN
    SELECT s.kind INTO v_kind FROM ts_series s WHERE s.series_id = p_series FOR UPDATE;
    IF v_kind IS NULL THEN
        RAISE EXCEPTION 'no series %', p_series USING ERRCODE = 'no_data_found';
    ELSIF v_kind <> 'numeric' THEN
        RAISE EXCEPTION 'series % holds % values: only a numeric point can be a counter',
            p_series, v_kind USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE ts_series SET counter = p_counter WHERE series_id = p_series AND counter <> p_counter;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF p_counter THEN
        -- The series' raw range, compressed days included (whole days: a bucket without a
        -- sample recomputes to nothing).
        SELECT least(min(m.lo), min(z.lo)), greatest(max(m.hi), max(z.hi)) INTO v_first, v_last
        FROM (SELECT min(m.ts) AS lo, max(m.ts) AS hi FROM ts_measure m
              WHERE m.series_id = p_series) m,
             (SELECT min(z.seg_start) AS lo, max(z.seg_start) + interval '1 day' AS hi
              FROM ts_measure_z z WHERE z.series_id = p_series) z;
        v_first := greatest(v_first, (SELECT t.expired_before FROM ts_tier t WHERE t.tier = 'raw'));
        IF v_first IS NOT NULL AND v_first <= v_last THEN
            INSERT INTO ts_invalidation (tier, series_id, bucket)
            SELECT '1m', p_series, g
            FROM generate_series(date_bin('1 minute', v_first, timestamptz '2000-01-03'),
                                 v_last, interval '1 minute') g;
            GET DIAGNOSTICS v_count = ROW_COUNT;
        END IF;
    ELSE
        -- Coarse to fine: the order in which a refresh takes these locks (54_state_refresh.sql).
        FOREACH v_kind IN ARRAY ARRAY['1h', '5m', '1m'] LOOP
            -- (no compression of the tier moves the series' rows meanwhile: 58_state_compress.sql)
            PERFORM pg_advisory_xact_lock(hashtext('traksense.compress.' || v_kind));
            EXECUTE format('DELETE FROM %I WHERE series_id = $1', 'ts_state_' || v_kind)
            USING p_series;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            v_count := v_count + v_n;
        END LOOP;
        WITH gone AS (DELETE FROM ts_state_z z WHERE z.series_id = p_series RETURNING z.n_rows)
        SELECT v_count + coalesce(sum(n_rows), 0) INTO v_count FROM gone;
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION ts_set_counter(bigint, boolean) IS
    'Owner only: mark a numeric series as a counter (its buckets then carry delta), or unmark it.';
REVOKE ALL ON FUNCTION ts_set_counter(bigint, boolean) FROM PUBLIC;

-- A counter's rollups: the tier's rows (ts_read_rollup_<tier>, unchanged) and each bucket's
-- delta: the increase inside it (stored, a stale bucket recomputed, or computed on the fly from
-- raw from the watermark on)
-- plus the step from the previous bucket's last value to its first.
DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('1m', '1 minute'), ('5m', '5 minutes'), ('1h', '1 hour'))
                           AS v(tier, width) LOOP
        EXECUTE format($template$
CREATE OR REPLACE FUNCTION ts_read_counter_%1$s(
    p_series bigint, p_lo timestamptz, p_end timestamptz, p_limit integer)
RETURNS TABLE (ts timestamptz, v_avg float8, v_min float8, v_max float8, n integer,
               delta float8)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $body$
DECLARE
    v_width constant interval := interval %2$L;
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
    v_fly constant boolean := coalesce(current_setting('app.materialized_only', true), '') <> 'on';
    v_wm timestamptz;
BEGIN
    IF NOT ts_series_visible(p_series) THEN
        RETURN;
    END IF;
    SELECT ts_bucket_ceil(v_width, t.watermark) INTO v_wm FROM ts_tier t WHERE t.tier = %1$L;
    RETURN QUERY
    WITH r AS MATERIALIZED (
        SELECT r.* FROM ts_read_rollup_%1$s(p_series, p_lo, p_end, p_limit)
             WITH ORDINALITY AS r(ts, v_avg, v_min, v_max, n, o)
    ), span AS (
        SELECT min(r.ts) AS lo, max(r.ts) + v_width AS hi FROM r
    ), fly AS (
        -- From raw: from the bucket of the last sample before the window when that is past the
        -- watermark (the previous bucket of the first row), else from the window's start.
        SELECT f.bucket, f.v_first, f.v_last, f.delta
        FROM span
        CROSS JOIN LATERAL (
            SELECT date_bin(v_width, max(m.ts), v_origin) AS lo FROM ts_measure m
            WHERE m.series_id = p_series AND m.ts >= v_wm AND m.ts < span.lo) prev
        CROSS JOIN LATERAL ts_state_of_samples(
            ARRAY[p_series], ARRAY[greatest(coalesce(prev.lo, span.lo), v_wm)], ARRAY[span.hi],
            v_width, ts_state_max_gap()) f
        WHERE v_fly AND span.hi > v_wm
    ), c AS (
        -- The stored rows (stale ones recomputed: 69_state_fresh.sql) and the one before.
        -- (ts_state_fresh inlined, its stale buckets computed once: OFFSET 0)
        SELECT s.bucket, s.v_first, s.v_last, s.delta
        FROM span
        CROSS JOIN LATERAL (
            SELECT CASE WHEN v_fly
                        THEN ts_state_stale(%1$L, p_series, span.lo, least(span.hi, v_wm)) END
                       AS buckets
            OFFSET 0) st
        CROSS JOIN LATERAL ts_state_fresh(%1$L, p_series, span.lo, least(span.hi, v_wm),
                                          st.buckets, v_width,
                                          ts_state_decode(p_series, st.buckets)) s
        WHERE span.lo < least(span.hi, v_wm)
        UNION ALL
        SELECT s.bucket, s.v_first, s.v_last, s.delta
        FROM span CROSS JOIN LATERAL ts_state_prev(%1$L, p_series, least(span.lo, v_wm), v_fly) s
        WHERE span.lo IS NOT NULL  -- (no rows, no row before them to look for)
        UNION ALL
        SELECT * FROM fly
    ), d AS (
        SELECT c.bucket,
               c.delta + coalesce(ts_counter_step(lag(c.v_last) OVER (ORDER BY c.bucket),
                                                  c.v_first), 0) AS delta
        FROM c
    )
    SELECT r.ts, r.v_avg, r.v_min, r.v_max, r.n, d.delta
    FROM r LEFT JOIN d ON d.bucket = r.ts
    ORDER BY r.o;
END
$body$;
COMMENT ON FUNCTION ts_read_counter_%1$s(bigint, timestamptz, timestamptz, integer) IS
    'Rollups of one counter series of the current tenant with each bucket''s delta, like '
    'ts_read_rollup_%1$s; empty for any other tenant''s series.';
REVOKE ALL ON FUNCTION ts_read_counter_%1$s(bigint, timestamptz, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_read_counter_%1$s(bigint, timestamptz, timestamptz, integer)
    TO app_user;
$template$, t.tier, t.width);
    END LOOP;
END
$do$;
