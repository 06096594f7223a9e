-- Calendar buckets (agg=1d|1w|1mo, DESIGN §7, docs/api.md): days, ISO weeks and months that
-- start at local midnight in an IANA time zone, computed at read time from a rollup tier.
--
--   ts_tenant_tz()                          the bound tenant's time zone, or NULL
--   ts_calendar_zone(tz, lo, end)           the zone to use and the widest tier width it aligns to
--   ts_read_calendar_<tier>(series, unit, tz, lo, end, limit)
--                                           one series' calendar buckets from one tier
--
-- A calendar bucket is the union of the tier's buckets that start inside it; exact when the
-- zone's midnights fall on the tier's bucket boundaries (1h for whole-hour offsets, 5m for
-- Asia/Kolkata's +05:30 or Asia/Kathmandu's +05:45): ts_calendar_zone says which. Buckets are
-- aggregated from the tier's real-time read function, so a calendar answer is as exact and as
-- fresh as the tier's (read-your-writes included) and reads only what the tenant may read.

-- The tenant's zone is in `tenant`, which neither app_user nor the web role may read: this
-- gives the bound tenant's own value and nothing else.
CREATE OR REPLACE FUNCTION ts_tenant_tz()
RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$ SELECT nullif(t.tz, '') FROM tenant t WHERE t.id = ts_bound_tenant() $$;
COMMENT ON FUNCTION ts_tenant_tz() IS
    'The time zone of the tenant bound to the transaction (tenant set --tz), NULL when unset.';

-- Whether PostgreSQL knows a zone name (the calendar's arithmetic is PostgreSQL's, so its tz
-- database is the one that counts). A name it does not know is a client's mistake, a 400.
CREATE OR REPLACE FUNCTION ts_valid_tz(p_tz text)
RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- Abbreviations (CET, EST) and POSIX strings (UTC+3) are accepted by AT TIME ZONE but are
    -- not zones: they have no DST rules, and '+3' means three hours *west* of Greenwich.
    -- AT TIME ZONE looks a name up as an abbreviation first, so a single-word zone of the tz
    -- database (Japan, Singapore, Egypt) counts only when it is not also an abbreviation
    -- (CET, EST, GMT); single words are rare, and only they pay for that lookup.
    IF p_tz IS NULL OR p_tz !~ '^(UTC|[A-Za-z_]+(/[A-Za-z0-9_+-]+)+|[A-Za-z_]+)$' THEN
        RETURN false;
    END IF;
    IF p_tz ~ '^[A-Za-z_]+$' AND p_tz <> 'UTC' AND EXISTS (
        SELECT FROM pg_timezone_abbrevs a WHERE lower(a.abbrev) = lower(p_tz))
    THEN
        RETURN false;
    END IF;
    PERFORM now() AT TIME ZONE p_tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- The zone a calendar read uses (the one asked, else the tenant's, else UTC; NULL when the one
-- asked is not a zone) and the widest bucket width, in seconds, that every local midnight in
-- [lo, end) falls on: 3600, 300, 60, or 0 when none (a zone offset of seconds, LMT of old
-- dates). Midnights are found by truncating instants 12 hours apart (no local day is shorter);
-- week and month starts are midnights too. Only the midnights of the 20 years before now (and
-- one year after) are looked at: a window of centuries would cost millions of rows, and no
-- tier keeps data that old.
CREATE OR REPLACE FUNCTION ts_calendar_zone(
    p_tz text, p_lo timestamptz, p_end timestamptz, OUT tz text, OUT aligned integer)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tz text := coalesce(p_tz, ts_tenant_tz(), 'UTC');
BEGIN
    IF NOT ts_valid_tz(v_tz) THEN
        RETURN;
    END IF;
    tz := v_tz;
    SELECT CASE WHEN bool_and(m.e % 3600 = 0) IS NOT FALSE THEN 3600
                WHEN bool_and(m.e % 300 = 0) THEN 300
                WHEN bool_and(m.e % 60 = 0) THEN 60
                ELSE 0 END
    INTO aligned
    FROM (SELECT extract(epoch FROM date_trunc('day', g, v_tz))::numeric AS e
          FROM generate_series(greatest(p_lo, now() - interval '20 years'),
                               least(p_end, now() + interval '1 year'), interval '12 hours') g) m;
END
$$;
COMMENT ON FUNCTION ts_calendar_zone(text, timestamptz, timestamptz) IS
    'The time zone of a calendar read (given, else the tenant''s, else UTC; NULL if not a '
    'zone) and the widest tier width (s) its midnights in [lo, end) fall on (0: none).';

-- The start of the calendar bucket after the one starting at p_b: local wall-clock arithmetic
-- (a day is 23 or 25 hours across a DST change), then back to an instant.
CREATE OR REPLACE FUNCTION ts_calendar_next(p_unit text, p_tz text, p_b timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT ((p_b AT TIME ZONE p_tz) + ('1 ' || p_unit)::interval) AT TIME ZONE p_tz $$;

-- The first calendar bucket starting at or after p_lo, and the end of the last one starting
-- before p_end: the range of tier rows a calendar read sums.
CREATE OR REPLACE FUNCTION ts_calendar_bounds(
    p_unit text, p_tz text, p_lo timestamptz, p_end timestamptz,
    OUT first timestamptz, OUT stop timestamptz)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF p_unit NOT IN ('day', 'week', 'month') THEN
        RAISE EXCEPTION 'calendar unit must be day, week or month, got %', p_unit
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    first := date_trunc(p_unit, p_lo, p_tz);
    IF first < p_lo THEN
        first := ts_calendar_next(p_unit, p_tz, first);
    END IF;
    stop := ts_calendar_next(p_unit, p_tz, date_trunc(p_unit, p_end - interval '1 microsecond', p_tz));
END
$$;

-- One function per tier, like ts_read_rollup_<tier> (65_read.sql), which each calls: buckets
-- starting in [p_lo, p_end), each aggregated whole (its rows may reach past p_end, as a tier
-- bucket starting before end is returned whole), at most p_limit, in order. SECURITY INVOKER:
-- the tier function checks the series' tenant.
DO $do$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['1m', '5m', '1h'] LOOP
        EXECUTE format($template$
DROP FUNCTION IF EXISTS ts_read_calendar_%1$s(bigint, text, text, timestamptz, timestamptz, integer);
CREATE OR REPLACE FUNCTION ts_read_calendar_%1$s(
    p_series bigint, p_unit text, p_tz text, p_lo timestamptz, p_end timestamptz,
    p_limit integer)
RETURNS TABLE (ts timestamptz, v_avg float8, v_min float8, v_max float8, n integer,
               delta float8)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $body$
DECLARE
    v_first timestamptz;  -- the first bucket starting at or after p_lo
    v_stop timestamptz;   -- the end of the last bucket starting before p_end
    v_counter boolean := (SELECT s.counter FROM ts_series_tenant s WHERE s.series_id = p_series);
BEGIN
    SELECT b.first, b.stop INTO v_first, v_stop FROM ts_calendar_bounds(p_unit, p_tz, p_lo, p_end) b;
    IF v_first >= p_end THEN
        RETURN;
    END IF;
    -- sum(v_avg * n) / sum(n): the tier's rows carry their average, not their sum; the
    -- difference from the sum of samples is float rounding (a few ulps).
    -- A counter's delta per bucket includes the step from the previous bucket's last value,
    -- so a calendar bucket's delta is the sum of its buckets' (the meter's use that day).
    RETURN QUERY
        SELECT b.bucket, b.s / b.k, b.lo, b.hi, b.k::integer, b.d
        FROM (SELECT date_trunc(p_unit, r.ts, p_tz) AS bucket, sum(r.v_avg * r.n) AS s,
                     min(r.v_min) AS lo, max(r.v_max) AS hi, sum(r.n) AS k, sum(r.delta) AS d
              FROM (SELECT c.ts, c.v_avg, c.v_min, c.v_max, c.n, c.delta
                    FROM ts_read_counter_%1$s(p_series, v_first, v_stop, 2147483647) c
                    WHERE v_counter
                    UNION ALL
                    SELECT x.ts, x.v_avg, x.v_min, x.v_max, x.n, NULL::float8
                    FROM ts_read_rollup_%1$s(p_series, v_first, v_stop, 2147483647) x
                    WHERE NOT v_counter) r
              GROUP BY 1) b
        WHERE b.bucket < p_end
        ORDER BY b.bucket
        LIMIT p_limit;
END
$body$;
COMMENT ON FUNCTION ts_read_calendar_%1$s(bigint, text, text, timestamptz, timestamptz, integer) IS
    'Calendar buckets (day, week, month in a time zone) of one series of the current tenant '
    'from the %1$s tier, starting in [lo, end), in order, at most limit; delta for a counter.';
REVOKE ALL ON FUNCTION ts_read_calendar_%1$s(bigint, text, text, timestamptz, timestamptz, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_read_calendar_%1$s(bigint, text, text, timestamptz, timestamptz, integer)
    TO app_user;
$template$, t);
    END LOOP;
END
$do$;

-- Calendar buckets of a boolean or text point: the state rows of a tier (ts_read_state_<tier>,
-- 69_read_state.sql, holds and changes across its buckets included, and the empty buckets a
-- hold reaches) summed per local day, week or month. The tier's buckets are whole inside the
-- calendar bucket (ts_calendar_zone), so its time in each state is exact, and its changes
-- include the change from the previous calendar bucket's last value.
DO $do$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['1m', '5m', '1h'] LOOP
        EXECUTE format($template$
CREATE OR REPLACE FUNCTION ts_read_calendar_state_%1$s(
    p_series bigint, p_unit text, p_tz text, p_lo timestamptz, p_end timestamptz,
    p_limit integer)
RETURNS TABLE (ts timestamptz, n integer, s_first text, s_last text, changes integer,
               time_in jsonb)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $body$
DECLARE
    v_first timestamptz;
    v_stop timestamptz;
BEGIN
    SELECT b.first, b.stop INTO v_first, v_stop FROM ts_calendar_bounds(p_unit, p_tz, p_lo, p_end) b;
    IF v_first >= p_end THEN
        RETURN;
    END IF;
    RETURN QUERY
        WITH r AS MATERIALIZED (
            SELECT date_trunc(p_unit, s.ts, p_tz) AS b, s.*
            FROM ts_read_state_%1$s(p_series, v_first, v_stop, 2147483647) s
        ), g AS (
            SELECT r.b, sum(r.n)::integer AS n, sum(r.changes)::integer AS changes,
                   (array_agg(r.s_first ORDER BY r.ts) FILTER (WHERE r.s_first IS NOT NULL))[1]
                       AS s_first,
                   (array_agg(r.s_last ORDER BY r.ts DESC) FILTER (WHERE r.s_last IS NOT NULL))[1]
                       AS s_last
            FROM r GROUP BY r.b
        ), h AS (
            SELECT r.b, e.key, sum(e.value::float8) AS secs
            FROM r CROSS JOIN LATERAL jsonb_each_text(r.time_in) e
            GROUP BY 1, 2
        )
        SELECT g.b, g.n, g.s_first, g.s_last, g.changes,
               ts_state_fold(coalesce((SELECT jsonb_object_agg(h.key, h.secs) FROM h
                                       WHERE h.b = g.b), '{}'))
        FROM g
        WHERE g.b < p_end
        ORDER BY g.b
        LIMIT p_limit;
END
$body$;
COMMENT ON FUNCTION ts_read_calendar_state_%1$s(bigint, text, text, timestamptz, timestamptz,
                                                integer) IS
    'Calendar buckets of a boolean or text series of the current tenant from the %1$s state '
    'rows: n, first, last, changes, time in each state per local day, week or month.';
REVOKE ALL ON FUNCTION ts_read_calendar_state_%1$s(bigint, text, text, timestamptz, timestamptz,
                                                   integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_read_calendar_state_%1$s(bigint, text, text, timestamptz,
                                                      timestamptz, integer) TO app_user;
$template$, t);
    END LOOP;
END
$do$;

REVOKE ALL ON FUNCTION ts_tenant_tz() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_tenant_tz() TO app_user;
REVOKE ALL ON FUNCTION ts_calendar_zone(text, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_calendar_zone(text, timestamptz, timestamptz) TO app_user;
