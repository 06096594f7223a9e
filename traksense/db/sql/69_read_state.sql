-- Reading the state rollups of boolean and text points (0009_state_rollups.sql, 54_state_refresh.sql):
-- ts_read_state_1m, _5m and _1h, one function per tier from one template, like
-- ts_read_rollup_<tier> (65_read.sql).
--
-- A stored row holds what its own samples decide. Reading adds what crosses bucket boundaries:
-- - the change from the previous bucket's last value to this bucket's first (`changes`);
-- - the hold of each bucket's last sample: its value holds until the next sample, at most
--   max_gap, and never past now; the part of that hold inside this bucket, inside the next
--   bucket (before its first sample), and inside the empty buckets between them, which are
--   answered as rows of their own with n = 0 and no first/last (a chiller running while its
--   gateway only reports changes still runs in them).
-- Rows come from the tier below its watermark (the buckets a pending invalidation made stale
-- recomputed: 69_state_fresh.sql) and, unless app.materialized_only = on, computed
-- on the fly from the raw samples from the watermark on (any tier: a state bucket is a function
-- of its samples alone). One row before the window and one after it give the holds and the
-- change that reach into the window.
DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('1m', '1 minute'), ('5m', '5 minutes'), ('1h', '1 hour'))
                           AS v(tier, width) LOOP
        EXECUTE format($template$
CREATE OR REPLACE FUNCTION ts_read_state_%1$s(
    p_series bigint, p_lo timestamptz, p_end timestamptz, p_limit integer)
RETURNS TABLE (ts timestamptz, n integer, s_first text, s_last text, changes integer,
               time_in jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
-- Generic plans, pruned at executor start-up (as 65_read.sql's): a custom plan of the
-- statements over the partitioned state tables is planned again on every call, every partition.
SET plan_cache_mode = force_generic_plan
AS $body$
DECLARE
    v_width constant interval := interval %2$L;
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
    v_gap constant interval := ts_state_max_gap();
    v_fly constant boolean := coalesce(current_setting('app.materialized_only', true), '') <> 'on';
    v_wm timestamptz;    -- buckets before it are materialized; from it on computed from raw
    v_lo timestamptz := date_bin(interval %2$L, p_lo, timestamptz '2000-01-03 00:00:00+00');
    v_stale timestamptz[];
    v_prev ts_state_1m;
    v_next ts_state_1m;
    -- Only a text point can hold more than 16 values (a boolean two): fold only there.
    v_text constant boolean := (SELECT s.kind = 'text' FROM ts_series s WHERE s.series_id = p_series);
BEGIN
    IF NOT ts_series_visible(p_series) OR p_limit <= 0 THEN
        RETURN;
    END IF;
    SELECT ts_bucket_ceil(v_width, t.watermark) INTO v_wm FROM ts_tier t WHERE t.tier = %1$L;
    IF NOT v_fly THEN
        p_end := least(p_end, v_wm);
    END IF;
    IF v_lo >= p_end THEN
        RETURN;
    END IF;
    -- The row before: the last one starting before p_lo (from raw when that is past the
    -- watermark and raw holds a sample there, else from the tier).
    IF v_fly AND p_lo > v_wm THEN
        SELECT f.* INTO v_prev
        FROM (SELECT max(m.ts) AS ts FROM ts_measure m
              WHERE m.series_id = p_series AND m.ts >= v_wm AND m.ts < p_lo) l
        CROSS JOIN LATERAL ts_state_of_samples(
            ARRAY[p_series], ARRAY[date_bin(v_width, l.ts, v_origin)],
            ARRAY[date_bin(v_width, l.ts, v_origin) + v_width], v_width, v_gap) f
        WHERE l.ts IS NOT NULL AND f.bucket < p_lo;
    END IF;
    IF v_prev.series_id IS NULL THEN
        SELECT s.* INTO v_prev FROM ts_state_prev(%1$L, p_series, least(p_lo, v_wm), v_fly) s;
    END IF;
    -- The row after: the first one starting at or after p_end.
    IF p_end < v_wm THEN
        SELECT s.* INTO v_next FROM ts_state_next(%1$L, p_series, p_end, v_wm, v_fly) s;
    END IF;
    IF v_next.series_id IS NULL AND v_fly THEN
        SELECT f.* INTO v_next
        FROM (SELECT min(m.ts) AS ts FROM ts_measure m
              WHERE m.series_id = p_series
                AND m.ts >= greatest(ts_bucket_ceil(v_width, p_end), v_wm)) l
        CROSS JOIN LATERAL ts_state_of_samples(
            ARRAY[p_series], ARRAY[date_bin(v_width, l.ts, v_origin)],
            ARRAY[date_bin(v_width, l.ts, v_origin) + v_width], v_width, v_gap) f
        WHERE l.ts IS NOT NULL;
    END IF;

    -- prev, the window's rows, next, in order; each row r with the one before it (a) and after
    -- it: r's own last hold inside its bucket, up to the next row's first sample; a's hold into
    -- r's bucket, up to r's first sample; the change from a's last value; and the empty buckets
    -- between r and the next row that r's last hold reaches. One statement: a per-row PL/pgSQL
    -- walk cost 12 µs a row (540 ms of a 30-day read at 1m), this about 2.
    IF v_fly THEN
        v_stale := ts_state_stale(%1$L, p_series, p_lo, least(p_end, v_wm));
    END IF;
    RETURN QUERY
    WITH u AS (
        SELECT (v_prev).* WHERE v_prev.series_id IS NOT NULL
        UNION ALL
        -- The window's rows (buckets starting in [p_lo, p_end)): below the watermark stored
        -- (the stale ones recomputed), from it on computed from raw.
        SELECT s.* FROM ts_state_fresh(%1$L, p_series, p_lo, least(p_end, v_wm), v_stale,
                                       v_width, ts_state_decode(p_series, v_stale)) s
        WHERE p_lo < least(p_end, v_wm)
        UNION ALL
        SELECT f.* FROM ts_state_of_samples(ARRAY[p_series], ARRAY[greatest(v_lo, v_wm)],
                                            ARRAY[ts_bucket_ceil(v_width, p_end)], v_width,
                                            v_gap) f
        WHERE v_fly AND p_end > v_wm AND f.bucket >= p_lo
        UNION ALL
        SELECT (v_next).* WHERE v_next.series_id IS NOT NULL
    ), w AS (
        SELECT u.bucket, u.n, u.t_first, u.t_last, u.s_first, u.s_last, u.changes, u.time_in,
               lag(u.s_last) OVER o AS a_s_last, lag(u.t_last) OVER o AS a_t_last,
               lead(u.bucket) OVER o AS z_bucket,
               -- the end of r's last hold: the next sample, max_gap, now
               least(coalesce(lead(u.t_first) OVER o, 'infinity'), u.t_last + v_gap, now())
                   AS hold_end
        FROM u
        WINDOW o AS (ORDER BY u.bucket)
    )
    SELECT o.ts, o.n, o.s_first, o.s_last, o.changes, o.time_in
    FROM (
        SELECT w.bucket AS ts, w.n, w.s_first, w.s_last,
               w.changes + (w.a_t_last IS NOT NULL AND w.a_s_last IS DISTINCT FROM w.s_first)::integer
                   AS changes,
               CASE WHEN v_text THEN ts_state_fold(h2.v) ELSE h2.v END AS time_in
        FROM w
        -- The two holds' seconds, then each added to time_in (what ts_state_add does, written
        -- out: as a function it is not inlined here and cost 2.6 µs a call). OFFSET 0 keeps
        -- each step evaluated once, not copied into the next.
        CROSS JOIN LATERAL (
            SELECT extract(epoch FROM least(w.hold_end, w.bucket + v_width) - w.t_last)::float8
                       AS own,
                   extract(epoch FROM least(w.t_first, w.a_t_last + v_gap, now())
                                      - greatest(w.a_t_last, w.bucket))::float8 AS inherited
            OFFSET 0) s
        CROSS JOIN LATERAL (
            SELECT CASE WHEN s.own > 0 AND w.s_last IS NOT NULL
                        THEN w.time_in || jsonb_build_object(
                            w.s_last, coalesce((w.time_in ->> w.s_last)::float8, 0) + s.own)
                        ELSE w.time_in END AS v
            OFFSET 0) h1
        CROSS JOIN LATERAL (
            SELECT CASE WHEN s.inherited > 0 AND w.a_s_last IS NOT NULL
                        THEN h1.v || jsonb_build_object(
                            w.a_s_last, coalesce((h1.v ->> w.a_s_last)::float8, 0) + s.inherited)
                        ELSE h1.v END AS v
            OFFSET 0) h2
        WHERE w.bucket >= p_lo AND w.bucket < p_end
        UNION ALL
        SELECT c, 0, NULL::text, NULL::text, 0,
               jsonb_build_object(w.s_last, extract(epoch FROM least(w.hold_end, c + v_width) - c)::float8)
        FROM w
        CROSS JOIN LATERAL generate_series(
            w.bucket + v_width,
            least(w.hold_end, coalesce(w.z_bucket, 'infinity'), p_end) - interval '1 microsecond',
            v_width) c
        -- (only a row followed by a gap that its hold reaches has empty buckets after it)
        WHERE w.bucket < p_end AND coalesce(w.z_bucket, 'infinity') > w.bucket + v_width
          AND w.hold_end > w.bucket + v_width AND c >= p_lo
    ) o
    ORDER BY o.ts
    LIMIT p_limit;
END
$body$;
COMMENT ON FUNCTION ts_read_state_%1$s(bigint, timestamptz, timestamptz, integer) IS
    'State rollups (boolean, text) of one series of the current tenant with lo <= bucket < end, '
    'in order, at most limit, holds across buckets included; empty for any other series.';
REVOKE ALL ON FUNCTION ts_read_state_%1$s(bigint, timestamptz, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_read_state_%1$s(bigint, timestamptz, timestamptz, integer)
    TO app_user;
$template$, t.tier, t.width);
    END LOOP;
END
$do$;
