-- Transparent compression of old rollup partitions (docs/compression.md).
--
--   ts_compress_partition(name)               move a tier partition into its compressed store
--   ts_decompress_segment(tier, series, seg)  restore one series' rows of one partition
--   ts_decompress_for(tier, series[], ...)    restore the segments a write is about to touch
--   ts_measure_<tier>_zrows                   internal: the compressed rows, decoded
--   ts_compression_stats                      owner-only: bytes before/after per tier
--
-- Invariant: for each (series, tier partition) rows live either in the uncompressed partition or
-- in one row of the compressed store, never both. The only writer of old buckets, the refresh
-- engine, calls ts_decompress_for() on the keys it is about to write (and on the source rows it
-- is about to read), so late data lands in a decompressed segment that the next compression job
-- compresses again.
--
-- Locks: compression of a tier holds the tier's refresh lock (no refresh writes into the
-- partition meanwhile) and its compress lock; decompression holds the compress lock. Taken in
-- that order everywhere (refresh.<tier> before any compress.<tier>, finer tier's compress lock
-- last), so they cannot deadlock.

-- Name of the compressed partition of a tier partition: ts_measure_1m_p20260105 ->
-- ts_measure_1m_z_p20260105. Retention drops both.
CREATE OR REPLACE FUNCTION ts_compressed_name(p_partition text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT regexp_replace(p_partition, '_p([0-9]+)$', '_z_p\1')
$$;
COMMENT ON FUNCTION ts_compressed_name(text) IS
    'Name of the compressed-store partition holding the compressed rows of a tier partition.';

-- The decoded compressed rows of each tier, with the tier's columns. Internal (no grant): the
-- *_rt views union them with the uncompressed rows. A caller's series_id = X reaches the primary
-- key of every compressed partition; a bucket range filters the decoded rows (a plain view cannot
-- turn it into a seg_start range: see docs/compression.md).
CREATE OR REPLACE VIEW ts_measure_1m_zrows AS
SELECT z.series_id,
       z.seg_start + coalesce(u.o, z.off0 + u.i::integer - 1) * interval '1 minute' AS bucket,
       coalesce(u.su, u.mi * u.n) AS v_sum, u.mi AS v_min, coalesce(u.ma, u.mi) AS v_max, u.n,
       z.seg_start
FROM ts_measure_1m_z z
CROSS JOIN LATERAL unnest(z.v_min, z.v_max, z.v_sum, z.n, z.offs) WITH ORDINALITY
    AS u(mi, ma, su, n, o, i);

CREATE OR REPLACE VIEW ts_measure_5m_zrows AS
SELECT z.series_id,
       z.seg_start + coalesce(u.o, z.off0 + u.i::integer - 1) * interval '5 minutes' AS bucket,
       coalesce(u.su, u.mi * u.n) AS v_sum, u.mi AS v_min, coalesce(u.ma, u.mi) AS v_max, u.n,
       z.seg_start
FROM ts_measure_5m_z z
CROSS JOIN LATERAL unnest(z.v_min, z.v_max, z.v_sum, z.n, z.offs) WITH ORDINALITY
    AS u(mi, ma, su, n, o, i);

CREATE OR REPLACE VIEW ts_measure_1h_zrows AS
SELECT z.series_id,
       z.seg_start + coalesce(u.o, z.off0 + u.i::integer - 1) * interval '1 hour' AS bucket,
       coalesce(u.su, u.mi * u.n) AS v_sum, u.mi AS v_min, coalesce(u.ma, u.mi) AS v_max, u.n,
       z.seg_start
FROM ts_measure_1h_z z
CROSS JOIN LATERAL unnest(z.v_min, z.v_max, z.v_sum, z.n, z.offs) WITH ORDINALITY
    AS u(mi, ma, su, n, o, i);

COMMENT ON VIEW ts_measure_1m_zrows IS 'Internal: the compressed 1-minute rollups, decoded.';
COMMENT ON VIEW ts_measure_5m_zrows IS 'Internal: the compressed 5-minute rollups, decoded.';
COMMENT ON VIEW ts_measure_1h_zrows IS 'Internal: the compressed 1-hour rollups, decoded.';

-- Restore the compressed segments of `p_tier` that hold the given (series, bucket) keys: their
-- rows go back into the uncompressed partition and their compressed rows are deleted. A key
-- stands for [bucket, bucket + p_width) (a coarser bucket read from this tier), else one instant.
-- Returns the number of rows restored; cheap when nothing in the range is compressed.
CREATE OR REPLACE FUNCTION ts_decompress_for(
    p_tier text, p_series bigint[], p_buckets timestamptz[], p_width interval DEFAULT '0')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE;
    v_restored bigint;
BEGIN
    SELECT * INTO STRICT v_tier FROM ts_tier WHERE tier = p_tier AND bucket_width IS NOT NULL;
    IF NOT EXISTS (
        SELECT FROM ts_partition p
        WHERE p.tier = p_tier AND p.compressed_at IS NOT NULL
          AND p.hi > (SELECT min(b) FROM unnest(p_buckets) b)
          AND p.lo <= (SELECT max(b) FROM unnest(p_buckets) b) + p_width)
    THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('traksense.compress.' || p_tier));
    EXECUTE format(
        'WITH keys AS (
             SELECT DISTINCT u.s, date_bin($1, e.at, timestamptz ''2000-01-03 00:00:00+00'') AS seg
             FROM unnest($2, $3) AS u(s, b)
             CROSS JOIN LATERAL (VALUES (u.b),
                 (u.b + greatest($4 - interval ''1 microsecond'', interval ''0''))) AS e(at)
         ), gone AS (
             DELETE FROM %1$I z USING keys k
             WHERE z.series_id = k.s AND z.seg_start = k.seg
             RETURNING z.*
         ), restored AS (
             INSERT INTO %2$I (series_id, bucket, v_sum, v_min, v_max, n)
             SELECT g.series_id, g.seg_start + coalesce(u.o, g.off0 + u.i::integer - 1) * $5,
                    coalesce(u.su, u.mi * u.n), u.mi, coalesce(u.ma, u.mi), u.n
             FROM gone g
             CROSS JOIN LATERAL unnest(g.v_min, g.v_max, g.v_sum, g.n, g.offs) WITH ORDINALITY
                 AS u(mi, ma, su, n, o, i)
             RETURNING 1
         )
         SELECT count(*) FROM restored',
        v_tier.relation || '_z', v_tier.relation)
    INTO v_restored
    USING v_tier.partition_width, p_series, p_buckets, p_width, v_tier.bucket_width;
    RETURN v_restored;
END
$$;
COMMENT ON FUNCTION ts_decompress_for(text, bigint[], timestamptz[], interval) IS
    'Restore into the uncompressed tier the compressed segments holding the given (series, '
    'bucket) keys (each key covering [bucket, bucket + width)); returns the rows restored.';

-- One segment, by its key.
CREATE OR REPLACE FUNCTION ts_decompress_segment(p_tier text, p_series bigint, p_seg_start timestamptz)
RETURNS bigint
LANGUAGE sql
SET search_path = public, pg_temp
AS $$
    SELECT ts_decompress_for(p_tier, ARRAY[p_series], ARRAY[p_seg_start])
$$;
COMMENT ON FUNCTION ts_decompress_segment(text, bigint, timestamptz) IS
    'Restore one compressed segment (series, partition start) into the uncompressed tier.';

-- Compress one tier partition, atomically: every series' rows become one row of the compressed
-- store (created on first use with the partition's bounds), the partition is emptied, and the
-- registry records when and what it measured before. Idempotent: a partition with nothing left
-- uncompressed is a no-op; a partial one (late data decompressed some segments) compresses
-- what came back.
CREATE OR REPLACE FUNCTION ts_compress_partition(
    p_partition text, OUT rows_compressed bigint, OUT segments bigint,
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
BEGIN
    SELECT * INTO v_part FROM ts_partition WHERE name = p_partition;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown partition %', quote_literal(p_partition)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO STRICT v_tier FROM ts_tier WHERE tier = v_part.tier;
    IF v_tier.bucket_width IS NULL THEN
        RAISE EXCEPTION 'partition % is raw data: only rollup tiers are compressed', p_partition
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- No refresh writes into the partition while it moves, no decompression runs meanwhile.
    PERFORM pg_advisory_xact_lock(hashtext('traksense.refresh.' || v_tier.tier));
    PERFORM pg_advisory_xact_lock(hashtext('traksense.compress.' || v_tier.tier));

    IF to_regclass(v_z) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       v_z, v_tier.relation || '_z', v_part.lo, v_part.hi);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', v_z);
        -- pglz on every server (lz4 is not built into every PostgreSQL; pglz also compresses
        -- these arrays a little smaller, see docs/compression.md).
        FOREACH v_col IN ARRAY ARRAY['offs', 'v_min', 'v_max', 'v_sum', 'n'] LOOP
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION pglz', v_z, v_col);
        END LOOP;
    END IF;

    -- Defensive: a series both compressed and present uncompressed (a writer bypassed
    -- ts_decompress_for) is merged by restoring its compressed rows first.
    EXECUTE format(
        'SELECT ts_decompress_for(%L, array_agg(DISTINCT p.series_id), array_agg(%L::timestamptz))
         FROM %I p WHERE EXISTS (SELECT FROM %I z WHERE z.series_id = p.series_id)
         HAVING count(*) > 0',
        v_tier.tier, v_part.lo, p_partition, v_z);

    bytes_before := pg_total_relation_size(p_partition::regclass);
    EXECUTE format(
        'WITH moved AS (
             INSERT INTO %1$I (series_id, seg_start, n_rows, off0, offs, v_min, v_max, v_sum, n)
             SELECT r.series_id, $1, count(*), min(r.o),
                    CASE WHEN max(r.o) - min(r.o) + 1 <> count(*)
                         THEN array_agg(r.o ORDER BY r.bucket) END,
                    array_agg(r.v_min ORDER BY r.bucket),
                    array_agg(CASE WHEN float8send(r.v_max) <> float8send(r.v_min) THEN r.v_max END
                              ORDER BY r.bucket),
                    array_agg(CASE WHEN float8send(r.v_sum) <> float8send(r.v_min * r.n) THEN r.v_sum END
                              ORDER BY r.bucket),
                    array_agg(r.n ORDER BY r.bucket)
             FROM (SELECT m.*, (extract(epoch FROM m.bucket - $1) / extract(epoch FROM $2))::integer AS o
                   FROM %2$I m) r
             GROUP BY r.series_id
             RETURNING n_rows
         )
         SELECT coalesce(sum(n_rows), 0), count(*) FROM moved',
        v_z, p_partition)
    INTO rows_compressed, segments
    USING v_part.lo, v_tier.bucket_width;
    -- TRUNCATE, not DELETE: the partition's heap and index go back to zero bytes at once.
    EXECUTE format('TRUNCATE %I', p_partition);
    bytes_after := pg_total_relation_size(v_z::regclass);

    UPDATE ts_partition SET compressed_at = now() WHERE name = p_partition;
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
COMMENT ON FUNCTION ts_compress_partition(text) IS
    'Compress a rollup tier partition into its compressed store in one transaction; returns '
    'rows and segments compressed and bytes before/after.';

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
        ORDER BY p.lo
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT FROM %I)', v_part.name) INTO v_has_rows;
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
WHERE t.bucket_width IS NOT NULL
ORDER BY t.bucket_width;
COMMENT ON VIEW ts_compression_stats IS
    'Per rollup tier: compressed partitions, segments and rows, bytes before (measured when '
    'compressed, per row) and after, bytes per row and ratio. Owner only.';

REVOKE ALL ON ts_measure_1m_zrows, ts_measure_5m_zrows, ts_measure_1h_zrows FROM PUBLIC;
REVOKE ALL ON ts_compression_stats FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_decompress_for(text, bigint[], timestamptz[], interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_decompress_segment(text, bigint, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_compress_partition(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_compression_candidates(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_drop_compressed(text) FROM PUBLIC;
