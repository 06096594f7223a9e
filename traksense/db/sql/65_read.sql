-- The read path of GET /data/points: one series' rows of one tier, in time order.
--
-- The tenant views answer the same question, but they join every row to ts_series for its
-- identity and tenant, and a join's output is not ordered by its inner side: PostgreSQL sorts
-- the whole range afterwards (43,200 rows for 30 days at 1 minute; an on-disk sort for a day of
-- raw samples). These functions check the series' tenant once, then read the series' range
-- with ORDER BY on the relations behind the views, which the (series_id, ts|bucket) primary keys
-- answer in order: an ordered Append of raw partitions, a Merge Append of a tier's branches
-- (60_tier_views.sql explains their shape).
--
-- SECURITY DEFINER, because app_user has no privilege on those relations; what makes that safe
-- is the first statement: a series that is not the transaction's tenant's reads as empty, the
-- same answer the tenant views give. The tenant comes from app.tenant_id, never a parameter.
-- Static statements in plpgsql are prepared once per connection and reused (generic plans prune
-- partitions at executor start-up), so a request does not pay for planning over every partition.
-- Rows are returned in order: callers keep it with WITH ORDINALITY. API transactions plan no
-- parallel workers (traksense/db/context.py): one series' range never gains from them, while
-- the real-time branches, whose watermark bound is unknown when the plan is made, look big
-- enough to the planner to launch workers for nothing (about 20 ms per read, measured).

-- (The two helpers carry no SET clause: it would make every call push and pop the setting, a
-- tenth of a millisecond here. Only their SECURITY DEFINER callers, which set search_path,
-- may execute them.)
CREATE OR REPLACE FUNCTION ts_series_visible(p_series bigint)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (SELECT FROM ts_series s
                   WHERE s.series_id = p_series AND s.tenant_id = ts_current_tenant())
$$;
COMMENT ON FUNCTION ts_series_visible(bigint) IS
    'Whether a series belongs to the current tenant (app.tenant_id).';

-- The lower bound of `segment` for rows at or after p_lo: the start of the partition holding
-- p_lo. Bounding segment too lets a range read skip compressed segments before decoding them
-- (60_tier_views.sql); computed into a variable, so it reaches the statement as a plain value.
CREATE OR REPLACE FUNCTION ts_segment_floor(p_tier text, p_lo timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$ SELECT CASE WHEN isfinite(p_lo) THEN ts_partition_start(p_tier, p_lo) ELSE p_lo END $$;

-- Raw: ts_measure, and the compressed raw store when raw compression is on (ts_measure_rt).
CREATE OR REPLACE FUNCTION ts_read_raw(
    p_series bigint, p_lo timestamptz, p_end timestamptz, p_limit integer)
RETURNS TABLE (ts timestamptz, v_num float8, v_bool boolean, v_text text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_seg_lo timestamptz := ts_segment_floor('raw', p_lo);
BEGIN
    IF ts_series_visible(p_series) THEN
        RETURN QUERY
            SELECT m.ts, m.v_num, m.v_bool, m.v_text
            FROM ts_measure_rt m
            WHERE m.series_id = p_series AND m.ts >= p_lo AND m.ts < p_end
              AND m.segment >= v_seg_lo AND m.segment < p_end
            ORDER BY m.ts LIMIT p_limit;
    END IF;
END
$$;
COMMENT ON FUNCTION ts_read_raw(bigint, timestamptz, timestamptz, integer) IS
    'Raw samples (compressed ones included) of one series of the current tenant with '
    'lo <= ts < end, in order, at most limit; empty for any other series.';

CREATE OR REPLACE FUNCTION ts_read_rollup(
    p_tier text, p_series bigint, p_lo timestamptz, p_end timestamptz, p_limit integer)
RETURNS TABLE (ts timestamptz, v_avg float8, v_min float8, v_max float8, n integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_seg_lo timestamptz;
BEGIN
    IF NOT ts_series_visible(p_series) THEN
        RETURN;
    END IF;
    v_seg_lo := ts_segment_floor(p_tier, p_lo);
    -- One static statement per tier (a relation name cannot be a parameter, and EXECUTE would
    -- plan over every partition on every call).
    CASE p_tier
    WHEN '1m' THEN
        RETURN QUERY SELECT r.bucket, r.v_sum / r.n, r.v_min, r.v_max, r.n
            FROM ts_measure_1m_rt r
            WHERE r.series_id = p_series AND r.bucket >= p_lo AND r.bucket < p_end
              AND r.segment >= v_seg_lo AND r.segment < p_end
            ORDER BY r.bucket LIMIT p_limit;
    WHEN '5m' THEN
        RETURN QUERY SELECT r.bucket, r.v_sum / r.n, r.v_min, r.v_max, r.n
            FROM ts_measure_5m_rt r
            WHERE r.series_id = p_series AND r.bucket >= p_lo AND r.bucket < p_end
              AND r.segment >= v_seg_lo AND r.segment < p_end
            ORDER BY r.bucket LIMIT p_limit;
    WHEN '1h' THEN
        RETURN QUERY SELECT r.bucket, r.v_sum / r.n, r.v_min, r.v_max, r.n
            FROM ts_measure_1h_rt r
            WHERE r.series_id = p_series AND r.bucket >= p_lo AND r.bucket < p_end
              AND r.segment >= v_seg_lo AND r.segment < p_end
            ORDER BY r.bucket LIMIT p_limit;
    ELSE
        RAISE EXCEPTION 'unknown rollup tier %', coalesce(quote_literal(p_tier), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END CASE;
END
$$;
COMMENT ON FUNCTION ts_read_rollup(text, bigint, timestamptz, timestamptz, integer) IS
    'Rollups (1m, 5m, 1h) of one series of the current tenant with lo <= bucket < end, in '
    'order, at most limit, real-time unless app.materialized_only = on; empty for any other '
    'series.';

-- First and last sample of one series of the current tenant (NULLs for any other series): one
-- primary-key probe each in ts_measure, and with raw compression the decoded oldest and newest
-- compressed days only (not every compressed day, as a min() over the raw view would).
CREATE OR REPLACE FUNCTION ts_series_span(
    p_series bigint, OUT first_ts timestamptz, OUT last_ts timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT least(r.lo, (SELECT min(d.ts) FROM ts_measure_zrows d
                        WHERE d.series_id = p_series AND d.seg_start = z.lo)),
           greatest(r.hi, (SELECT max(d.ts) FROM ts_measure_zrows d
                           WHERE d.series_id = p_series AND d.seg_start = z.hi))
    FROM (SELECT min(m.ts) AS lo, max(m.ts) AS hi FROM ts_measure m
          WHERE m.series_id = p_series) r,
         (SELECT min(c.seg_start) AS lo, max(c.seg_start) AS hi FROM ts_measure_z c
          WHERE c.series_id = p_series) z
    WHERE ts_series_visible(p_series)
$$;
COMMENT ON FUNCTION ts_series_span(bigint) IS
    'First and last sample time of one series of the current tenant (compressed ones included); '
    'NULLs for any other series.';

REVOKE ALL ON FUNCTION ts_series_visible(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_series_span(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_series_span(bigint) TO app_user;
REVOKE ALL ON FUNCTION ts_segment_floor(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_read_raw(bigint, timestamptz, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_read_rollup(text, bigint, timestamptz, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_read_raw(bigint, timestamptz, timestamptz, integer) TO app_user;
GRANT EXECUTE ON FUNCTION ts_read_rollup(text, bigint, timestamptz, timestamptz, integer) TO app_user;
