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
-- The functions force generic plans (plan_cache_mode): left to choose, PostgreSQL estimates a
-- generic plan over every partition as dearer than a custom one, and plans the real-time view's
-- statements again on every call. Measured on a 30-day @1h read with compressed partitions
-- present: 2.3 ms a call instead of 0.45 ms uncompressed, 0.9 instead of 0.5 compressed.
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

-- Offset in microseconds from its day's start of sample i of a compressed raw day: t_us[i], or
-- on a regular grid t_first + (i - 1) * t_step (0008_fleet_storage).
CREATE OR REPLACE FUNCTION ts_raw_offset(p_t_us bigint[], p_t_first bigint, p_t_step bigint,
                                         p_i integer)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(p_t_us[p_i], p_t_first + (p_i - 1) * p_t_step) $$;

-- How many samples of a compressed raw day of p_n samples lie before offset p_us: a binary
-- search over t_us (sorted, distinct: width_bucket() counts the elements <= p_us - 1), or a
-- division on a regular grid.
CREATE OR REPLACE FUNCTION ts_raw_below(p_t_us bigint[], p_t_first bigint, p_t_step bigint,
                                        p_n integer, p_us bigint)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_t_us IS NOT NULL THEN width_bucket(p_us - 1, p_t_us)
                WHEN p_us <= p_t_first THEN 0
                ELSE least(p_n, (p_us - p_t_first + p_t_step - 1) / p_t_step)::integer END
$$;

-- Raw: ts_measure, and the compressed raw store when raw compression is on. Without compressed
-- days in the range it is one statement on ts_measure_rt, answered in index order. With some,
-- the range is read in order piece by piece, as the rollups are read below: the samples before
-- a compressed day from ts_measure_rt (its `segment` bound keeps that day out), then the day's
-- samples in range, decoded by ts_raw_slice() in stored order (ts order), and so on. A (series,
-- day) is either compressed or not, so the pieces never overlap. Through the view every day in
-- range would be decoded whole, filtered and sorted with the rest.
CREATE OR REPLACE FUNCTION ts_read_raw(
    p_series bigint, p_lo timestamptz, p_end timestamptz, p_limit integer)
RETURNS TABLE (ts timestamptz, v_num float8, v_bool boolean, v_text text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_at timestamptz := p_lo;                                 -- samples before it are returned
    v_seg_from timestamptz := ts_segment_floor('raw', p_lo);  -- days before it are read
    v_left integer := p_limit;
    v_rows integer;
    v_i1 integer;
    s record;
BEGIN
    IF NOT ts_series_visible(p_series) THEN
        RETURN;
    END IF;
    -- i0..i1: the elements of the day in [p_lo, p_end). Only the first day can start before
    -- p_lo and only the last end after p_end; there ts_raw_below() counts the samples before
    -- the bound (a division on a regular grid, else a binary search over t_us).
    FOR s IN SELECT b.seg_start, b.last,
                    CASE WHEN p_lo > b.seg_start
                         THEN 1 + ts_raw_below(b.t_us, b.t_first, b.t_step, b.n_rows,
                             (extract(epoch FROM p_lo - b.seg_start) * 1000000)::bigint)
                         ELSE 1 END AS i0,
                    CASE WHEN p_end <= b.last
                         THEN ts_raw_below(b.t_us, b.t_first, b.t_step, b.n_rows,
                             (extract(epoch FROM p_end - b.seg_start) * 1000000)::bigint)
                         ELSE b.n_rows END AS i1
             FROM (SELECT z.seg_start, z.n_rows, z.t_us, z.t_first, z.t_step,
                          z.seg_start + ts_raw_offset(z.t_us, z.t_first, z.t_step, z.n_rows)
                                        * interval '1 microsecond' AS last
                   FROM ts_measure_z z
                   WHERE z.series_id = p_series AND z.seg_start >= v_seg_from
                     AND z.seg_start < p_end) b
             ORDER BY b.seg_start
    LOOP
        EXIT WHEN v_left <= 0;
        IF v_at < s.seg_start THEN
            RETURN QUERY SELECT m.ts, m.v_num, m.v_bool, m.v_text
                FROM ts_measure_rt m
                WHERE m.series_id = p_series AND m.ts >= v_at AND m.ts < s.seg_start
                  AND m.segment >= v_seg_from AND m.segment < s.seg_start
                ORDER BY m.ts LIMIT v_left;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            v_left := v_left - v_rows;
            EXIT WHEN v_left <= 0;
        END IF;
        v_i1 := least(s.i1, s.i0 + v_left - 1);
        IF s.i0 <= v_i1 THEN
            RETURN QUERY SELECT d.ts, d.v_num, d.v_bool, d.v_text
                FROM ts_measure_z z
                CROSS JOIN LATERAL ts_raw_slice(z.seg_start, s.i0, v_i1, z.t_us, z.t_first,
                                                z.t_step, z.v_num, z.scale, z.k_base,
                                                z.k_num, z.v_bool, z.v_text) d
                WHERE z.series_id = p_series AND z.seg_start = s.seg_start;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            v_left := v_left - v_rows;
        END IF;
        v_at := greatest(v_at, s.last + interval '1 microsecond');
        v_seg_from := s.seg_start + interval '1 microsecond';
    END LOOP;
    IF v_left > 0 AND v_at < p_end THEN
        RETURN QUERY SELECT m.ts, m.v_num, m.v_bool, m.v_text
            FROM ts_measure_rt m
            WHERE m.series_id = p_series AND m.ts >= v_at AND m.ts < p_end
              AND m.segment >= v_seg_from AND m.segment < p_end
            ORDER BY m.ts LIMIT v_left;
    END IF;
END
$$;
COMMENT ON FUNCTION ts_read_raw(bigint, timestamptz, timestamptz, integer) IS
    'Raw samples (compressed ones included) of one series of the current tenant with '
    'lo <= ts < end, in order, at most limit; empty for any other series.';

-- Rollups: ts_read_rollup_1m, _5m and _1h, one function per tier made from one template (a
-- relation name cannot be a parameter, and EXECUTE would plan over every partition on every
-- call; a dispatching function would copy every row once more).
--
-- Without compressed segments in the range it is one statement on the tier's real-time view, as
-- the tenant view would read it. With some, the range is read in order piece by piece: the rows
-- before a compressed segment from the view, then the segment itself, decoded by ts_z_slice()
-- (a float8-form segment: by a statement of its own, below) for the part of it in range and in
-- order, and so on; the rest from the view. Through the view a segment would be decoded whole,
-- every row filtered, and every row sorted with the rest (the planner cannot know decoded rows
-- come out in order): about twice the time (docs/compression.md).
-- A segment holds one partition of the series, and a (series, partition) is either compressed or
-- not, so the pieces never overlap. Compressed rows past the watermark (a refresh far behind)
-- would need the view's watermark rule: then the rest of the range goes to the view.
--
-- Read-your-writes: each tier's function is made twice from the template. ts_read_rollup_<tier>
-- first looks up the series' pending invalidations in the window (ts_stale_buckets): buckets
-- whose stored value a late write, overwrite or delete has made stale and the next refresh will
-- recompute. Without any (the common case: one index probe) it reads as described. With some, it
-- reads the stored rows through ts_read_rollup_<tier>_stored (the same body without this
-- prelude), drops the stale buckets and puts in their place the buckets recomputed from the
-- source by ts_fresh_<tier> (raw for 1m; the tier below, itself read-your-writes, for 5m and 1h).
-- The limit taken from the stored rows is raised by the number of stale buckets, so that the
-- first p_limit rows of the merge are exact. app.materialized_only = on skips all of it.
DO $do$
DECLARE
    t record;
    v record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('1m', '1 minute'), ('5m', '5 minutes'), ('1h', '1 hour'))
                           AS v(tier, width) LOOP
    FOR v IN SELECT * FROM (VALUES
        ('_stored', '', 'Internal: ts_read_rollup_' || t.tier || ' without read-your-writes.', ''),
        ('', format($prelude$
    IF coalesce(current_setting('app.materialized_only', true), '') <> 'on' THEN
        v_stale := ts_stale_buckets(%1$L, p_series, p_lo, p_end);
        IF v_stale IS NOT NULL THEN
            RETURN QUERY
                SELECT u.ts, u.v_avg, u.v_min, u.v_max, u.n
                -- An anti-join, hashed: `ts <> ALL (v_stale)` would compare every row with
                -- every stale bucket.
                FROM (SELECT r.ts, r.v_avg, r.v_min, r.v_max, r.n
                      FROM ts_read_rollup_%1$s_stored(p_series, p_lo, p_end,
                                                      p_limit + cardinality(v_stale)) r
                      LEFT JOIN unnest(v_stale) AS st(b) ON st.b = r.ts
                      WHERE st.b IS NULL
                      UNION ALL
                      SELECT f.ts, f.v_avg, f.v_min, f.v_max, f.n
                      FROM ts_fresh_%1$s(p_series, v_stale) f) u
                ORDER BY u.ts LIMIT p_limit;
            RETURN;
        END IF;
    END IF;$prelude$, t.tier),
         'Rollups of one series of the current tenant with lo <= bucket < end, in order, at most '
         'limit, real-time and read-your-writes unless app.materialized_only = on; empty for '
         'any other series.',
         format('GRANT EXECUTE ON FUNCTION ts_read_rollup_%s(bigint, timestamptz, timestamptz,'
                ' integer) TO app_user;', t.tier))
        ) AS v(suffix, prelude, comment, grant_) LOOP
        EXECUTE format($template$
CREATE OR REPLACE FUNCTION ts_read_rollup_%1$s%3$s(
    p_series bigint, p_lo timestamptz, p_end timestamptz, p_limit integer)
RETURNS TABLE (ts timestamptz, v_avg float8, v_min float8, v_max float8, n integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $body$
DECLARE
    v_width constant interval := interval %2$L;
    v_step constant numeric := extract(epoch FROM interval %2$L);   -- v_width in seconds
    v_wm constant timestamptz := (SELECT t.watermark FROM ts_tier t WHERE t.tier = %1$L);
    v_at timestamptz := p_lo;                                -- rows before v_at are returned
    v_seg_from timestamptz := ts_segment_floor(%1$L, p_lo);  -- segments before it are read
    v_left integer := p_limit;
    v_rows integer;
    v_i0 integer;
    v_i1 integer;
    v_whole boolean;
    v_n0 integer;
    v_stale timestamptz[];
    v_past_wm boolean := false;
    s record;
BEGIN
    IF NOT ts_series_visible(p_series) THEN
        RETURN;
    END IF;%4$s
    -- i0..i1: the segment's elements in [p_lo, p_end). Only the first segment can start before
    -- p_lo and only the last end after p_end. There `a` and `e` are the offsets (in buckets from
    -- seg_start) of the first bucket at or after each bound, and the elements below them are
    -- counted: by subtraction in a contiguous segment, by binary search over the sorted,
    -- distinct offsets of a segment with gaps (width_bucket).
    FOR s IN SELECT b.seg_start, b.last, b.plain, b.n_rows, b.n0, b.off0, b.offs IS NULL AS contig,
                    CASE WHEN p_lo <= b.first THEN 1
                         WHEN b.offs IS NULL THEN 1 + b.a::integer - b.off0
                         ELSE 1 + width_bucket(b.a::integer - 1, b.offs) END AS i0,
                    CASE WHEN p_end > b.last THEN b.n_rows
                         WHEN b.offs IS NULL THEN b.e::integer - b.off0
                         ELSE width_bucket(b.e::integer - 1, b.offs) END AS i1
             FROM (SELECT z.seg_start, z.n_rows, z.off0, z.offs, z.k_min IS NULL AS plain,
                          CASE WHEN cardinality(z.n) = 1 THEN z.n[1] END AS n0,
                          z.seg_start + z.off0 * v_width AS first,
                          z.seg_start + coalesce(z.offs[z.n_rows], z.off0 + z.n_rows - 1)
                                        * v_width AS last,
                          CASE WHEN isfinite(p_lo)
                               THEN ceil(extract(epoch FROM p_lo - z.seg_start) / v_step) END AS a,
                          CASE WHEN isfinite(p_end)
                               THEN ceil(extract(epoch FROM p_end - z.seg_start) / v_step) END AS e
                   FROM ts_measure_%1$s_z z
                   WHERE z.series_id = p_series AND z.seg_start >= v_seg_from
                     AND z.seg_start < p_end
                  ) b  -- (a and e: used only where the bound is in the segment)
             ORDER BY b.seg_start
    LOOP
        IF s.last >= v_wm THEN
            v_past_wm := true;  -- compressed rows past the watermark: the view's rule decides
        END IF;
        EXIT WHEN v_left <= 0 OR v_wm IS NULL OR v_past_wm;
        IF v_at < s.seg_start THEN
            -- Below the watermark (the loop stops at it): the tier's uncompressed rows.
            RETURN QUERY SELECT r.bucket, r.v_sum / r.n, r.v_min, r.v_max, r.n
                FROM ts_measure_%1$s r
                WHERE r.series_id = p_series AND r.bucket >= v_at AND r.bucket < s.seg_start
                ORDER BY r.bucket LIMIT v_left;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            v_left := v_left - v_rows;
            EXIT WHEN v_left <= 0;
        END IF;
        -- The segment's constants go into scalar variables: a statement reads those as cheap
        -- parameters, a record's fields at the cost of a lookup per row.
        v_i0 := s.i0;
        v_i1 := least(s.i1, s.i0 + v_left - 1);
        v_whole := v_i0 = 1 AND v_i1 = s.n_rows;
        v_n0 := s.n0;
        IF v_i0 <= v_i1 THEN
            IF s.plain AND s.contig AND v_n0 IS NOT NULL THEN
                -- A float8-form segment (ts_z_scaled_up_to, 55_compression_codec.sql) without gaps, its n the
                -- same in every row (stored once): the common case, read by the leanest statement.
                -- ts_z_slice()'s decoding without the scaled form's arithmetic (v_max NULL meaning
                -- v_min, v_sum NULL v_min * n); unnested straight from the scan, not through a
                -- LATERAL call (a nested loop and a subquery scan per row); sliced only when the
                -- range takes part of the segment (a slice copies the array); the buckets from
                -- generate_series; the scan kept below the unnesting (OFFSET 0), so the partitions'
                -- Append passes one row instead of every decoded one. Measured on 30 days @1m: as
                -- fast as reading uncompressed rows (docs/compression.md).
                RETURN QUERY
                    SELECT u.b, coalesce(u.su, u.mi * v_n0) / v_n0, u.mi, coalesce(u.ma, u.mi), v_n0
                    FROM (SELECT unnest(CASE WHEN v_whole THEN z.v_min
                                             ELSE z.v_min[v_i0:v_i1] END) AS mi,
                                 unnest(CASE WHEN v_whole THEN z.v_max
                                             ELSE z.v_max[v_i0:v_i1] END) AS ma,
                                 unnest(CASE WHEN v_whole THEN z.v_sum
                                             ELSE z.v_sum[v_i0:v_i1] END) AS su,
                                 generate_series(s.seg_start + (s.off0 + v_i0 - 1) * v_width,
                                                 s.seg_start + (s.off0 + v_i1 - 1) * v_width,
                                                 v_width) AS b
                          FROM (SELECT z.v_min, z.v_max, z.v_sum FROM ts_measure_%1$s_z z
                                WHERE z.series_id = p_series AND z.seg_start = s.seg_start
                                OFFSET 0) z) u;
            ELSIF s.plain THEN
                -- Any other float8-form segment: the same with the buckets' offsets (offs) where
                -- the segment has gaps, and n per row where it varies.
                RETURN QUERY
                    SELECT CASE WHEN u.o IS NULL THEN u.b ELSE s.seg_start + u.o * v_width END,
                           coalesce(u.su, u.mi * coalesce(u.n, v_n0)) / coalesce(u.n, v_n0),
                           u.mi, coalesce(u.ma, u.mi), coalesce(u.n, v_n0)
                    FROM (SELECT unnest(CASE WHEN v_whole THEN z.offs
                                             ELSE z.offs[v_i0:v_i1] END) AS o,
                                 unnest(CASE WHEN v_whole THEN z.v_min
                                             ELSE z.v_min[v_i0:v_i1] END) AS mi,
                                 unnest(CASE WHEN v_whole THEN z.v_max
                                             ELSE z.v_max[v_i0:v_i1] END) AS ma,
                                 unnest(CASE WHEN v_whole THEN z.v_sum
                                             ELSE z.v_sum[v_i0:v_i1] END) AS su,
                                 unnest(CASE WHEN v_n0 IS NOT NULL THEN NULL
                                             WHEN v_whole THEN z.n ELSE z.n[v_i0:v_i1] END) AS n,
                                 generate_series(s.seg_start + (z.off0 + v_i0 - 1) * v_width,
                                                 s.seg_start + (z.off0 + v_i1 - 1) * v_width,
                                                 v_width) AS b
                          FROM ts_measure_%1$s_z z
                          WHERE z.series_id = p_series AND z.seg_start = s.seg_start) u;
            ELSE
                RETURN QUERY SELECT d.bucket, d.v_sum / d.n, d.v_min, d.v_max, d.n
                    FROM ts_measure_%1$s_z z
                    CROSS JOIN LATERAL ts_z_slice(
                        z.seg_start, z.off0, v_width, v_i0, v_i1, z.scale, z.k_base, z.sum_unit,
                        z.offs, z.v_min, z.v_max, z.v_sum, z.n, z.k_min, z.k_max, z.k_max_w,
                        z.k_sum, z.c_sum) d
                    WHERE z.series_id = p_series AND z.seg_start = s.seg_start;
            END IF;
            GET DIAGNOSTICS v_rows = ROW_COUNT;
            v_left := v_left - v_rows;
        END IF;
        v_at := greatest(v_at, s.last + v_width);
        v_seg_from := s.seg_start + interval '1 microsecond';
    END LOOP;
    IF v_left > 0 AND v_at < p_end AND p_end <= v_wm AND NOT v_past_wm THEN
        -- Wholly below the watermark (a dashboard's history): the real-time view would answer
        -- the tier's uncompressed rows too, but start every branch of its plan (each partition
        -- of raw and of the finer tiers, for the on-the-fly part): 30 days at 1h in 0.3 ms
        -- instead of 1.4 ms.
        RETURN QUERY SELECT r.bucket, r.v_sum / r.n, r.v_min, r.v_max, r.n
            FROM ts_measure_%1$s r
            WHERE r.series_id = p_series AND r.bucket >= v_at AND r.bucket < p_end
            ORDER BY r.bucket LIMIT v_left;
    ELSIF v_left > 0 AND v_at < p_end THEN
        RETURN QUERY SELECT r.bucket, r.v_sum / r.n, r.v_min, r.v_max, r.n
            FROM ts_measure_%1$s_rt r
            WHERE r.series_id = p_series AND r.bucket >= v_at AND r.bucket < p_end
              AND r.segment >= v_seg_from AND r.segment < p_end
            ORDER BY r.bucket LIMIT v_left;
    END IF;
END
$body$;
COMMENT ON FUNCTION ts_read_rollup_%1$s%3$s(bigint, timestamptz, timestamptz, integer) IS %5$L;
REVOKE ALL ON FUNCTION ts_read_rollup_%1$s%3$s(bigint, timestamptz, timestamptz, integer)
    FROM PUBLIC;
%6$s
$template$, t.tier, t.width, v.suffix, v.prelude, v.comment, v.grant_);
    END LOOP;
    END LOOP;
END
$do$;

-- ts_read_rollup(tier, ...) of earlier versions: replaced by the per-tier functions above.
DROP FUNCTION IF EXISTS ts_read_rollup(text, bigint, timestamptz, timestamptz, integer);

-- First and last sample of one series of the current tenant (NULLs for any other series): one
-- primary-key probe each in ts_measure, and with raw compression the first offset of the oldest
-- compressed day and the last of the newest (in ts order; nothing else is decoded).
-- The span without the tenant check, for the catalog's SECURITY DEFINER functions
-- (66_catalog.sql), which list only the current tenant's series: the check verifies the
-- binding's MAC, about 30 µs, too much to pay once per series of a 1,000-series page.
-- Declared as a set (of always one row) so that PostgreSQL inlines it into the query that calls
-- it in FROM: a page of 1,000 spans in 5 ms instead of 23 ms of function calls (a function
-- returning one record is never inlined). Hence no SET clause and no SECURITY DEFINER here
-- either, which would prevent the inlining too.
DO $do$
BEGIN
    IF EXISTS (SELECT FROM pg_proc WHERE proname = 'ts_raw_span' AND NOT proretset) THEN
        DROP FUNCTION ts_raw_span(bigint);  -- the record-returning form of earlier versions
    END IF;
END
$do$;
CREATE OR REPLACE FUNCTION ts_raw_span(p_series bigint)
RETURNS TABLE (first_ts timestamptz, last_ts timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT least(r.lo, (SELECT c.seg_start + ts_raw_offset(c.t_us, c.t_first, c.t_step, 1)
                                             * interval '1 microsecond'
                        FROM ts_measure_z c WHERE c.series_id = p_series
                        ORDER BY c.seg_start LIMIT 1)),
           greatest(r.hi, (SELECT c.seg_start + ts_raw_offset(c.t_us, c.t_first, c.t_step,
                                                              c.n_rows)
                                                * interval '1 microsecond'
                           FROM ts_measure_z c WHERE c.series_id = p_series
                           ORDER BY c.seg_start DESC LIMIT 1))
    FROM (SELECT min(m.ts) AS lo, max(m.ts) AS hi FROM ts_measure m
          WHERE m.series_id = p_series) r
$$;
COMMENT ON FUNCTION ts_raw_span(bigint) IS
    'Internal: first and last sample time of a series, compressed ones included; no tenant check.';

CREATE OR REPLACE FUNCTION ts_series_span(
    p_series bigint, OUT first_ts timestamptz, OUT last_ts timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT s.first_ts, s.last_ts FROM ts_raw_span(p_series) s WHERE ts_series_visible(p_series)
$$;
COMMENT ON FUNCTION ts_series_span(bigint) IS
    'First and last sample time of one series of the current tenant (compressed ones included); '
    'NULLs for any other series.';

REVOKE ALL ON FUNCTION ts_series_visible(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_raw_span(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_series_span(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_series_span(bigint) TO app_user;
REVOKE ALL ON FUNCTION ts_segment_floor(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_read_raw(bigint, timestamptz, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_read_raw(bigint, timestamptz, timestamptz, integer) TO app_user;
