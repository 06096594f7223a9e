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
AS $body$
DECLARE
    v_width constant interval := interval %2$L;
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
    v_gap constant interval := ts_state_max_gap();
    v_fly constant boolean := coalesce(current_setting('app.materialized_only', true), '') <> 'on';
    v_wm timestamptz;    -- buckets before it are materialized; from it on computed from raw
    v_lo timestamptz := date_bin(interval %2$L, p_lo, timestamptz '2000-01-03 00:00:00+00');
    v_rows ts_state_1m[];
    v_prev ts_state_1m;
    v_next ts_state_1m;
    v_left integer := p_limit;
    -- Only a text point can hold more than 16 values (a boolean two): fold only there.
    v_text constant boolean := (SELECT s.kind = 'text' FROM ts_series s WHERE s.series_id = p_series);
    r ts_state_1m;
    a ts_state_1m;
    v_a_end timestamptz;  -- end of a's last sample's hold
    v_c timestamptz;
    v_in jsonb;
    i integer;
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
    -- The window's rows (buckets starting in [p_lo, p_end)), in order.
    SELECT array_agg(u ORDER BY u.bucket) INTO v_rows
    FROM (SELECT s.* FROM ts_state_rows(%1$L, p_series, p_lo, least(p_end, v_wm), v_fly) s
          UNION ALL
          SELECT f.* FROM ts_state_of_samples(ARRAY[p_series], ARRAY[greatest(v_lo, v_wm)],
                                              ARRAY[ts_bucket_ceil(v_width, p_end)], v_width,
                                              v_gap) f
          WHERE v_fly AND p_end > v_wm AND f.bucket >= p_lo) u;
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

    -- Walk prev, the window's rows, next: before each row, the empty buckets the previous
    -- row's last hold reaches; then the row with the holds that reach into it.
    v_rows := CASE WHEN v_prev.series_id IS NULL THEN '{}' ELSE ARRAY[v_prev] END
              || coalesce(v_rows, '{}')
              || CASE WHEN v_next.series_id IS NULL THEN '{}' ELSE ARRAY[v_next] END;
    a := NULL;
    FOR i IN 1 .. cardinality(v_rows) + 1 LOOP
        r := CASE WHEN i <= cardinality(v_rows) THEN v_rows[i] END;
        IF a.series_id IS NOT NULL THEN
            v_a_end := least(coalesce(r.t_first, 'infinity'), a.t_last + v_gap, now());
            -- Empty buckets between a and r that a's hold reaches.
            v_c := a.bucket + v_width;
            WHILE v_c < v_a_end AND v_c < coalesce(r.bucket, 'infinity') AND v_c < p_end LOOP
                IF v_c >= p_lo THEN
                    ts := v_c; n := 0; s_first := NULL; s_last := NULL; changes := 0;
                    time_in := jsonb_build_object(a.s_last, extract(epoch FROM
                        least(v_a_end, v_c + v_width) - v_c)::float8);
                    RETURN NEXT;
                    v_left := v_left - 1;
                    EXIT WHEN v_left <= 0;
                END IF;
                v_c := v_c + v_width;
            END LOOP;
            EXIT WHEN v_left <= 0;
        END IF;
        EXIT WHEN r.series_id IS NULL OR r.bucket >= p_end;
        IF r.bucket >= p_lo THEN
            -- Its own last hold, up to the next row's first sample (r + 1), inside its bucket.
            v_in := ts_state_add(r.time_in, r.s_last, extract(epoch FROM
                least(CASE WHEN i < cardinality(v_rows) THEN v_rows[i + 1].t_first
                           ELSE 'infinity' END,
                      r.t_last + v_gap, now(), r.bucket + v_width) - r.t_last)::float8);
            changes := r.changes;
            IF a.series_id IS NOT NULL THEN
                -- The previous row's last hold, up to this row's first sample.
                v_in := ts_state_add(v_in, a.s_last, extract(epoch FROM
                    least(r.t_first, a.t_last + v_gap, now()) - greatest(a.t_last, r.bucket))::float8);
                changes := changes + (a.s_last IS DISTINCT FROM r.s_first)::integer;
            END IF;
            ts := r.bucket; n := r.n; s_first := r.s_first; s_last := r.s_last;
            time_in := CASE WHEN v_text THEN ts_state_fold(v_in) ELSE v_in END;
            RETURN NEXT;
            v_left := v_left - 1;
            EXIT WHEN v_left <= 0;
        END IF;
        a := r;
    END LOOP;
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
