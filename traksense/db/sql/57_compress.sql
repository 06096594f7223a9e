-- Compressing old partitions, choosing them, dropping them, and their figures
-- (55_compression_codec.sql).

-- The advisory lock key (with 0 as second key) of one raw partition, by its start: compression
-- takes it exclusively, ts_ingest shared. A day number, so every session's time zone agrees.
CREATE OR REPLACE FUNCTION ts_raw_partition_lock(p_lo timestamptz)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT hashtext('traksense.compress.raw.' || floor(extract(epoch FROM p_lo) / 86400)) $$;

-- Compress one tier partition, atomically: every series' rows become one row of the compressed
-- store (created on first use with the partition's bounds), the partition is emptied, and the
-- registry records when and what it measured before. Idempotent: a partition with nothing left
-- uncompressed is a no-op; a partial one (late data decompressed some segments) compresses
-- what came back.
--
-- In chunks (p_series_lo and/or p_series_hi given): only the series in [lo, hi) move, taken out
-- of the partition by a DELETE ... RETURNING that feeds the compressed rows (one snapshot: a row
-- is deleted only if it is moved), and the partition is marked compressed (so writers restore
-- what they touch), nothing else. A large partition is moved chunk after chunk, each in a
-- transaction of its own (traksense/rollups/compression.py), so the locks below are held for a
-- chunk, not for the whole partition; a final call without bounds moves whatever is left, empties
-- the partition with TRUNCATE (reclaiming the deleted rows' space) and records the registry,
-- p_rows_before and p_bytes_before carrying what the chunks moved and what the partition
-- measured before the first one.
DROP FUNCTION IF EXISTS ts_compress_partition(text);
CREATE OR REPLACE FUNCTION ts_compress_partition(
    p_partition text, p_series_lo bigint DEFAULT NULL, p_series_hi bigint DEFAULT NULL,
    p_rows_before bigint DEFAULT NULL, p_bytes_before bigint DEFAULT NULL,
    OUT rows_compressed bigint, OUT segments bigint,
    OUT bytes_before bigint, OUT bytes_after bigint)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_part ts_partition%ROWTYPE;
    v_tier ts_tier%ROWTYPE;
    v_z text := ts_compressed_name(p_partition);
    v_started timestamptz := clock_timestamp();
    v_col text;
    v_chunk boolean := p_series_lo IS NOT NULL OR p_series_hi IS NOT NULL;
    v_lo bigint := coalesce(p_series_lo, -9223372036854775808);
    v_hi bigint := coalesce(p_series_hi, 9223372036854775807);
    -- The rows that move: the chunk's, deleted as they are read, or the whole partition's.
    v_src text := CASE WHEN v_chunk
                       THEN format('DELETE FROM %I WHERE series_id >= %s AND series_id < %s'
                                   ' RETURNING *', p_partition, v_lo, v_hi)
                       ELSE format('SELECT * FROM %I', p_partition) END;
BEGIN
    SELECT * INTO v_part FROM ts_partition WHERE name = p_partition;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown partition %', quote_literal(p_partition)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO STRICT v_tier FROM ts_tier WHERE tier = v_part.tier;
    IF v_tier.bucket_width IS NULL THEN
        -- Raw samples (optional raw compression): no 1m refresh reads them while they move,
        -- and no ingest writes into the partition (ts_ingest holds this lock shared for every
        -- partition its batch lands in, so a sample committed meanwhile cannot be truncated).
        PERFORM pg_advisory_xact_lock(ts_refresh_lock_key(n.tier)),
                pg_advisory_xact_lock(ts_refresh_work_key(n.tier))
        FROM ts_tier n WHERE n.source_tier = v_tier.tier;
        PERFORM pg_advisory_xact_lock(ts_raw_partition_lock(v_part.lo), 0);
    ELSE
        -- No refresh writes into the partition while it moves (the work lock: not even a chunk
        -- of a parallel refresh whose coordinator is gone), no decompression runs meanwhile.
        PERFORM pg_advisory_xact_lock(ts_refresh_lock_key(v_tier.tier));
        PERFORM pg_advisory_xact_lock(ts_refresh_work_key(v_tier.tier));
        PERFORM pg_advisory_xact_lock(hashtext('traksense.compress.' || v_tier.tier));
    END IF;

    IF to_regclass(v_z) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       v_z, v_tier.relation || '_z', v_part.lo, v_part.hi);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', v_z);
        -- pglz on every server (lz4 is not built into every PostgreSQL; pglz also compresses
        -- these arrays a little smaller, see docs/compression.md).
    END IF;
    -- Also the columns added by 0003 on a compressed partition created before it (once).
    FOR v_col IN
        SELECT a.attname FROM pg_attribute a
        WHERE a.attrelid = v_z::regclass AND a.attcompression <> 'p'
          AND a.attname IN ('offs', 'v_min', 'v_max', 'v_sum', 'n', 'k_min', 'k_max', 'k_max_w',
                            'k_sum', 'c_sum', 't_us', 'v_num', 'v_bool', 'v_text', 'k_num')
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION pglz', v_z, v_col);
    END LOOP;

    -- Defensive: a series both compressed and present uncompressed (a writer bypassed
    -- ts_decompress_for) is merged by restoring its compressed rows first.
    EXECUTE format(
        'SELECT ts_decompress_for(%L, array_agg(DISTINCT p.series_id), array_agg(%L::timestamptz))
         FROM %I p WHERE EXISTS (SELECT FROM %I z WHERE z.series_id = p.series_id)
           AND p.series_id >= %s AND p.series_id < %s
         HAVING count(*) > 0',
        v_tier.tier, v_part.lo, p_partition, v_z, v_lo, v_hi);

    bytes_before := coalesce(p_bytes_before, pg_total_relation_size(p_partition::regclass));
    IF v_tier.bucket_width IS NULL THEN
        -- Raw: each series' samples of the day, in ts order; only its kind's value array
        -- (0004, 0008). Times: on a regular grid (one step between every two samples) only the
        -- first offset and the step, else t_us. Numeric values: the scaled form when every
        -- value of the series' day is exactly k / 10^d (d in 0..4: the smallest d of any value,
        -- which every coarser-scaled value also meets), their offsets from k_base fit a
        -- smallint, and each decodes bit for bit with ts_raw_slice's arithmetic (checked here,
        -- element by element, before the form is taken); else the float8 array.
        EXECUTE format(
            'WITH src AS (' || v_src || '), r AS (
                 SELECT m.series_id, m.ts, m.v_num, m.v_bool, m.v_text,
                        (extract(epoch FROM m.ts - $1) * 1000000)::bigint AS us,
                        CASE WHEN m.v_num IS NULL THEN NULL
                             WHEN ts_z_exact(m.v_num, 0::smallint) THEN 0
                             WHEN ts_z_exact(m.v_num, 1::smallint) THEN 1
                             WHEN ts_z_exact(m.v_num, 2::smallint) THEN 2
                             WHEN ts_z_exact(m.v_num, 3::smallint) THEN 3
                             WHEN ts_z_exact(m.v_num, 4::smallint) THEN 4
                        END AS d
                 FROM src m
             ), s AS (
                 SELECT r.series_id, max(r.d)::smallint AS d, min(r.v_num) AS lo,
                        count(r.d) = count(*) AS all_d
                 FROM r GROUP BY r.series_id
             ), k AS (
                 SELECT r.*, CASE WHEN s.all_d THEN ts_z_pow10(s.d) END AS p,
                        CASE WHEN s.all_d THEN round(s.lo * ts_z_pow10(s.d))::int8 + 32768 END
                            AS kb,
                        r.us - lag(r.us) OVER (PARTITION BY r.series_id ORDER BY r.ts) AS dt
                 FROM r JOIN s USING (series_id)
             ), q AS (
                 SELECT k.*,
                        CASE WHEN k.p IS NOT NULL
                                  AND abs(k.v_num) < 4503599627370496 / k.p
                                  AND round(k.v_num * k.p)::int8 - k.kb BETWEEN -32768 AND 32767
                                  AND float8send((k.kb + (round(k.v_num * k.p)::int8 - k.kb)
                                                           ::smallint)::float8 / k.p)
                                      = float8send(k.v_num)
                             THEN (round(k.v_num * k.p)::int8 - k.kb)::smallint END AS kn
                 FROM k
             ), g AS (
                 SELECT q.series_id, count(*) AS n_rows, min(q.us) AS t_first,
                        CASE WHEN count(*) = 1 THEN 1
                             WHEN min(q.dt) = max(q.dt) THEN min(q.dt) END AS t_step,
                        array_agg(q.us ORDER BY q.ts) AS t_us,
                        bool_or(q.v_num IS NOT NULL) AS has_num,
                        count(q.kn) = count(*) AS scaled, min(q.p) AS p, min(q.kb) AS kb,
                        array_agg(q.kn ORDER BY q.ts) AS k_num,
                        array_agg(q.v_num ORDER BY q.ts) AS v_num,
                        CASE WHEN bool_or(q.v_bool IS NOT NULL)
                             THEN array_agg(q.v_bool ORDER BY q.ts) END AS v_bool,
                        CASE WHEN bool_or(q.v_text IS NOT NULL)
                             THEN array_agg(q.v_text ORDER BY q.ts) END AS v_text
                 FROM q GROUP BY q.series_id
             ), moved AS (
                 INSERT INTO %1$I (series_id, seg_start, n_rows, t_us, t_first, t_step, v_num,
                                   scale, k_base, k_num, v_bool, v_text)
                 SELECT g.series_id, $1, g.n_rows,
                        CASE WHEN g.t_step IS NULL THEN g.t_us END,
                        CASE WHEN g.t_step IS NOT NULL THEN g.t_first END, g.t_step,
                        CASE WHEN g.has_num AND NOT g.scaled THEN g.v_num END,
                        CASE WHEN g.has_num AND g.scaled THEN g.p END,
                        CASE WHEN g.has_num AND g.scaled THEN g.kb END,
                        CASE WHEN g.has_num AND g.scaled THEN g.k_num END,
                        g.v_bool, g.v_text
                 FROM g
                 RETURNING n_rows
             )
             SELECT coalesce(sum(n_rows), 0), count(*) FROM moved',
            v_z, p_partition)
        INTO rows_compressed, segments
        USING v_part.lo;
    ELSE
    -- Per series, in a tier that takes the scaled form for its rate (ts_z_scaled_up_to; else d
    -- is NULL and the segment keeps the float8 form): d = the smallest decimal scale (0..4) at
    -- which v_min and v_max of every row
    -- that has one are exactly an integer / 10^d. A row is scaled where its offsets fit and it
    -- decodes bit-identically with the readers' functions; the others stay float8 (exceptions:
    -- -0.0, more decimals, far values). The segment keeps the float8 form of 0002 when fewer
    -- than half its rows would be scaled. v_sum likewise, element by element (a scaled v_sum
    -- needs a scaled v_min). sum_unit: a power of two, half the ulp of the 10th-percentile
    -- |v_sum|.
    EXECUTE format(
        'WITH src AS (' || v_src || '), r AS (
             SELECT m.series_id, m.bucket, m.v_sum, m.v_min, m.v_max, m.n,
                    (extract(epoch FROM m.bucket - $1) / extract(epoch FROM $2))::integer AS o,
                    CASE WHEN NOT $3 THEN NULL  -- the float8 form: no row is scaled
                         WHEN ts_z_exact(m.v_min, 0::smallint) AND ts_z_exact(m.v_max, 0::smallint) THEN 0
                         WHEN ts_z_exact(m.v_min, 1::smallint) AND ts_z_exact(m.v_max, 1::smallint) THEN 1
                         WHEN ts_z_exact(m.v_min, 2::smallint) AND ts_z_exact(m.v_max, 2::smallint) THEN 2
                         WHEN ts_z_exact(m.v_min, 3::smallint) AND ts_z_exact(m.v_max, 3::smallint) THEN 3
                         WHEN ts_z_exact(m.v_min, 4::smallint) AND ts_z_exact(m.v_max, 4::smallint) THEN 4
                    END AS dmin,
                    -- (NULL: v_min * n, bit for bit; not tried where the product may overflow)
                    CASE WHEN abs(m.v_min) >= 1e290 THEN m.v_sum
                         WHEN float8send(m.v_sum) <> float8send(m.v_min * m.n) THEN m.v_sum
                    END AS v_sum_f
             FROM src m
         ), s AS (
             SELECT q.*, (round(q.vmin0 * ts_z_pow10(q.d))::int8 + 32768) AS kb,
                    coalesce(CASE WHEN q.lg BETWEEN -900 AND 900
                                  THEN power(2::float8, q.lg - 53) END, 1) AS unit
             FROM (SELECT r.series_id,
                          CASE WHEN count(r.dmin) * 2 >= count(*) AND avg(r.n) <= $4
                                    AND max(greatest(abs(r.v_min), abs(r.v_max)))
                                            FILTER (WHERE r.dmin IS NOT NULL)
                                        < 4503599627370496 / ts_z_pow10(max(r.dmin)::smallint)
                               THEN max(r.dmin) END::smallint AS d,
                          min(r.v_min) FILTER (WHERE r.dmin IS NOT NULL) AS vmin0,
                          (percentile_disc(0.1) WITHIN GROUP (
                               ORDER BY floor(ln(abs(r.v_sum)) / ln(2::float8)))
                               FILTER (WHERE r.v_sum <> 0))::integer AS lg
                   FROM r GROUP BY r.series_id) q
         ), k AS (
             SELECT r.*, s.d, s.kb, s.unit, k0.*
             FROM r JOIN s USING (series_id)
             LEFT JOIN LATERAL (
                 SELECT k1.km8, k1.kx8, k1.ks8,
                        CASE WHEN k1.c = trunc(k1.c) AND abs(k1.c) <= 32767
                             THEN k1.c::smallint END AS cs
                 FROM (SELECT round(r.v_min * ts_z_pow10(s.d))::int8 - s.kb AS km8,
                              round(r.v_max * ts_z_pow10(s.d))::int8
                                  - round(r.v_min * ts_z_pow10(s.d))::int8 AS kx8,
                              -- (bounds: every integer below stays under 2^52, exact)
                              CASE WHEN abs(r.v_sum) < 4503599627370496 / ts_z_pow10(s.d)
                                        AND abs(r.v_min) + abs(r.v_max)
                                            < 1125899906842624 / ts_z_pow10(s.d) / r.n
                                   THEN round(r.v_sum * ts_z_pow10(s.d))::int8
                                        - (r.n::int8 * (2 * round(r.v_min * ts_z_pow10(s.d))::int8
                                           + round(r.v_max * ts_z_pow10(s.d))::int8
                                           - round(r.v_min * ts_z_pow10(s.d))::int8)) / 2
                              END AS ks8,
                              CASE WHEN abs(r.v_sum) < 4503599627370496 / ts_z_pow10(s.d)
                                   THEN (r.v_sum - round(r.v_sum * ts_z_pow10(s.d))::int8::float8
                                         / ts_z_pow10(s.d)) / s.unit END AS c
                       WHERE s.d IS NOT NULL AND r.dmin IS NOT NULL) k1
             ) k0 ON true
         ), v AS (
             SELECT k.*,
                    CASE WHEN k.km8 BETWEEN -32768 AND 32767 AND k.kx8 BETWEEN -32768 AND 32767
                         THEN float8send(ts_z_min(NULL, ts_z_pow10(k.d), k.kb, k.km8::smallint))
                                  = float8send(k.v_min)
                              AND float8send(ts_z_max(NULL, NULL, ts_z_pow10(k.d), k.kb, k.km8::smallint,
                                                      k.kx8::integer))
                                  = float8send(k.v_max)
                         ELSE false END AS mok,
                    CASE WHEN k.km8 BETWEEN -32768 AND 32767 AND k.kx8 BETWEEN -32768 AND 32767
                              AND k.ks8 BETWEEN -32768 AND 32767 AND k.cs IS NOT NULL
                         THEN float8send(ts_z_sum(NULL, k.v_min, k.n, ts_z_pow10(k.d), k.kb, k.km8::smallint,
                                                  k.kx8::integer, k.ks8::smallint, k.cs, k.unit))
                              = float8send(k.v_sum)
                         ELSE false END AS sok0
             FROM k
         ), w AS (
             SELECT v.*, v.mok AND v.sok0 AS sok FROM v
         ), g AS (
             SELECT v.series_id, count(*) AS n_rows, min(v.o) AS off0,
                    CASE WHEN max(v.o) - min(v.o) + 1 <> count(*)
                         THEN array_agg(v.o ORDER BY v.bucket) END AS offs,
                    min(v.d) AS d, min(v.kb) AS kb, min(v.unit) AS unit,
                    count(*) FILTER (WHERE v.mok) * 2 >= count(*) AS mm_ok,
                    bool_and(v.mok) AS mm_all,
                    count(*) FILTER (WHERE v.sok) * 2 >= count(*) AS sum_ok,
                    bool_and(v.sok) AS sum_all,
                    bool_and(NOT v.mok OR v.kx8 BETWEEN 0 AND 255) AS kx_byte,
                    array_agg(v.v_min ORDER BY v.bucket) AS v_min,
                    array_agg(CASE WHEN float8send(v.v_max) <> float8send(v.v_min) THEN v.v_max END
                              ORDER BY v.bucket) AS v_max,
                    array_agg(CASE WHEN NOT v.mok THEN v.v_min END ORDER BY v.bucket) AS v_min_x,
                    array_agg(CASE WHEN NOT v.mok AND float8send(v.v_max) <> float8send(v.v_min)
                                   THEN v.v_max END ORDER BY v.bucket) AS v_max_x,
                    array_agg(v.v_sum_f ORDER BY v.bucket) AS v_sum,
                    array_agg(CASE WHEN NOT v.sok THEN v.v_sum_f END ORDER BY v.bucket) AS v_sum_x,
                    -- n the same in every row (a sensor at a steady rate): that one value
                    CASE WHEN min(v.n) = max(v.n) THEN ARRAY[min(v.n)]
                         ELSE array_agg(v.n ORDER BY v.bucket) END AS n,
                    array_agg(CASE WHEN v.mok THEN v.km8::smallint END ORDER BY v.bucket) AS k_min,
                    array_agg(CASE WHEN v.mok AND v.kx8 BETWEEN 0 AND 255
                                   THEN (v.kx8 - 128)::integer::"char" END
                              ORDER BY v.bucket) AS k_max,
                    array_agg(CASE WHEN v.mok AND NOT v.kx8 BETWEEN 0 AND 255
                                   THEN v.kx8::smallint END ORDER BY v.bucket) AS k_max_w,
                    array_agg(CASE WHEN v.sok THEN v.ks8::smallint END ORDER BY v.bucket) AS k_sum,
                    array_agg(CASE WHEN v.sok THEN v.cs END ORDER BY v.bucket) AS c_sum
             FROM w v GROUP BY v.series_id
         ), moved AS (
             INSERT INTO %1$I (series_id, seg_start, n_rows, off0, offs, v_min, v_max, v_sum, n,
                               scale, k_base, k_min, k_max, k_max_w, k_sum, c_sum, sum_unit)
             SELECT g.series_id, $1, g.n_rows, g.off0, g.offs,
                    CASE WHEN NOT g.mm_ok THEN g.v_min WHEN NOT g.mm_all THEN g.v_min_x END,
                    CASE WHEN NOT g.mm_ok THEN g.v_max WHEN NOT g.mm_all THEN g.v_max_x END,
                    CASE WHEN NOT (g.mm_ok AND g.sum_ok) THEN g.v_sum
                         WHEN NOT g.sum_all THEN g.v_sum_x END,
                    g.n,
                    CASE WHEN g.mm_ok THEN ts_z_pow10(g.d) END,
                    CASE WHEN g.mm_ok THEN g.kb END,
                    CASE WHEN g.mm_ok THEN g.k_min END,
                    CASE WHEN g.mm_ok THEN g.k_max END,
                    CASE WHEN g.mm_ok AND NOT g.kx_byte THEN g.k_max_w END,
                    CASE WHEN g.mm_ok AND g.sum_ok THEN g.k_sum END,
                    CASE WHEN g.mm_ok AND g.sum_ok THEN g.c_sum END,
                    CASE WHEN g.mm_ok AND g.sum_ok THEN g.unit END
             FROM g
             RETURNING n_rows
         )
         SELECT coalesce(sum(n_rows), 0), count(*) FROM moved',
        v_z, p_partition)
    INTO rows_compressed, segments
    USING v_part.lo, v_tier.bucket_width, ts_z_scaled_up_to(v_tier.tier) > 0,
          ts_z_scaled_up_to(v_tier.tier);
    END IF;
    UPDATE ts_partition SET compressed_at = now() WHERE name = p_partition;
    IF v_chunk THEN
        bytes_after := pg_total_relation_size(v_z::regclass);
        RETURN;
    END IF;
    -- TRUNCATE, not DELETE: the partition's heap and index go back to zero bytes at once.
    EXECUTE format('TRUNCATE %I', p_partition);
    -- The state rows' sibling partition goes with it, under the same locks (58_state_compress.sql).
    IF v_tier.bucket_width IS NOT NULL THEN
        PERFORM ts_state_compress(v_tier.tier, v_part.lo);
    END IF;
    bytes_after := pg_total_relation_size(v_z::regclass);
    rows_compressed := rows_compressed + coalesce(p_rows_before, 0);

    INSERT INTO ts_compression AS c
        (name, tier, z_name, rows_before, bytes_before, compressed_at, seconds)
    VALUES (p_partition, v_tier.tier, v_z, rows_compressed, bytes_before, now(),
            extract(epoch FROM clock_timestamp() - v_started))
    ON CONFLICT (name) DO UPDATE
    SET compressed_at = excluded.compressed_at, seconds = excluded.seconds,
        -- Keep the measurement of the largest compression (a recompression after late data
        -- sees only the decompressed segments).
        rows_before = CASE WHEN excluded.rows_before > c.rows_before
                           THEN excluded.rows_before ELSE c.rows_before END,
        bytes_before = CASE WHEN excluded.rows_before > c.rows_before
                            THEN excluded.bytes_before ELSE c.bytes_before END;
END
$$;
COMMENT ON FUNCTION ts_compress_partition(text, bigint, bigint, bigint, bigint) IS
    'Compress a rollup (or raw) tier partition (or the series [lo, hi) of it) into its compressed '
    'store in one transaction; returns rows and segments compressed and bytes before/after.';

-- Partitions of `p_tier` due for compression: entirely older than p_before, and either never
-- compressed or holding rows again (segments decompressed for late data).
CREATE OR REPLACE FUNCTION ts_compression_candidates(p_tier text, p_before timestamptz)
RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_part ts_partition%ROWTYPE;
    v_has_rows boolean;
BEGIN
    FOR v_part IN
        SELECT * FROM ts_partition p
        WHERE p.tier = p_tier AND p.hi <= p_before AND to_regclass(p.name) IS NOT NULL
          -- Invariant the real-time views rely on: the next tier has consumed a partition (its
          -- watermark is past it) before the partition is compressed, so the on-the-fly
          -- branches never need to decode compressed data (60_tier_views.sql).
          AND p.hi <= coalesce((SELECT n.watermark FROM ts_tier n WHERE n.source_tier = p_tier),
                               'infinity')
          -- And the tier's own: the refresh of the region above it writes without restoring
          -- segments (a 1h refresh lagging past COMPRESS_1H_AFTER_DAYS would meet them).
          AND p.hi <= (SELECT CASE WHEN t.bucket_width IS NULL THEN 'infinity' ELSE t.watermark END
                       FROM ts_tier t WHERE t.tier = p_tier)
        ORDER BY p.lo
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %I)', v_part.name) INTO v_has_rows;
        -- Or its state rows' sibling (a late boolean sample restored a segment of it alone).
        IF NOT v_has_rows AND to_regclass(ts_state_partition(p_tier, v_part.lo)) IS NOT NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT FROM %I)', ts_state_partition(p_tier, v_part.lo))
            INTO v_has_rows;
        END IF;
        IF v_has_rows THEN
            RETURN NEXT v_part.name;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ts_compression_candidates(text, timestamptz) IS
    'Partitions of a tier ending before an instant (and before the next tier''s watermark) '
    'that hold uncompressed rows.';

-- Drop the compressed partition of a tier partition (retention drops both).
CREATE OR REPLACE FUNCTION ts_drop_compressed(p_partition text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_z text := ts_compressed_name(p_partition);
BEGIN
    DELETE FROM ts_compression WHERE name = p_partition;
    IF v_z = p_partition OR to_regclass(v_z) IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP TABLE %I', v_z);
    RETURN true;
END
$$;
COMMENT ON FUNCTION ts_drop_compressed(text) IS
    'Drop the compressed store partition of a tier partition, if any (used by retention).';

-- Per tier: rows held compressed, their bytes before (measured when compressed) and now.
CREATE OR REPLACE VIEW ts_compression_stats AS
WITH z AS (
    SELECT '1m' AS tier, sum(n_rows) AS rows_now, count(*) AS segments FROM ts_measure_1m_z
    UNION ALL
    SELECT '5m', sum(n_rows), count(*) FROM ts_measure_5m_z
    UNION ALL
    SELECT '1h', sum(n_rows), count(*) FROM ts_measure_1h_z
    UNION ALL
    SELECT 'raw', sum(n_rows), count(*) FROM ts_measure_z
), c AS (
    SELECT c.tier, count(*) AS partitions, sum(c.rows_before) AS rows_before,
           sum(c.bytes_before) AS bytes_before,
           sum(pg_total_relation_size(to_regclass(c.z_name))) AS bytes_after,
           sum(c.seconds) AS seconds
    FROM ts_compression c GROUP BY c.tier
)
SELECT t.tier,
       coalesce(c.partitions, 0) AS partitions,
       coalesce(z.segments, 0) AS segments,
       coalesce(z.rows_now, 0)::bigint AS rows_compressed,
       -- Before: the measured bytes per row of the uncompressed partitions, for today's rows.
       coalesce(round(z.rows_now * c.bytes_before / nullif(c.rows_before, 0)), 0)::bigint
           AS bytes_before,
       coalesce(c.bytes_after, 0)::bigint AS bytes_after,
       round((c.bytes_before / nullif(c.rows_before, 0))::numeric, 1) AS bytes_per_row_before,
       round((c.bytes_after / nullif(z.rows_now, 0))::numeric, 1) AS bytes_per_row_after,
       round((z.rows_now * c.bytes_before / nullif(c.rows_before, 0)
              / nullif(c.bytes_after, 0))::numeric, 1) AS ratio,
       round(c.seconds::numeric, 3) AS compress_seconds
FROM ts_tier t
LEFT JOIN c ON c.tier = t.tier
LEFT JOIN z ON z.tier = t.tier
-- Raw appears once it has been compressed (optional raw compression).
WHERE t.bucket_width IS NOT NULL OR c.partitions > 0
ORDER BY t.bucket_width NULLS FIRST;
COMMENT ON VIEW ts_compression_stats IS
    'Per rollup tier (and raw, once compressed): compressed partitions, segments and rows, bytes before (measured when '
    'compressed, per row) and after, bytes per row and ratio. Owner only.';


REVOKE ALL ON FUNCTION ts_raw_partition_lock(timestamptz) FROM PUBLIC;
REVOKE ALL ON ts_compression_stats FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_compress_partition(text, bigint, bigint, bigint, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_compression_candidates(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_drop_compressed(text) FROM PUBLIC;
