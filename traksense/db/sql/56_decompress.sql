-- Restoring compressed segments, for writes into compressed ranges (55_compression_codec.sql).

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
    -- The segments (series, partition start) holding the keys.
    v_keys constant text := 'keys AS (
             SELECT DISTINCT u.s, date_bin($1, e.at, timestamptz ''2000-01-03 00:00:00+00'') AS seg
             FROM unnest($2, $3) AS u(s, b)
             CROSS JOIN LATERAL (VALUES (u.b),
                 (u.b + greatest($4 - interval ''1 microsecond'', interval ''0''))) AS e(at)
         ), gone AS (
             DELETE FROM %1$I z USING keys k
             WHERE z.series_id = k.s AND z.seg_start = k.seg
             RETURNING z.*
         )';
BEGIN
    SELECT * INTO STRICT v_tier FROM ts_tier WHERE tier = p_tier;
    IF NOT EXISTS (
        SELECT FROM ts_partition p
        WHERE p.tier = p_tier AND p.compressed_at IS NOT NULL
          AND p.hi > (SELECT min(b) FROM unnest(p_buckets) b)
          AND p.lo <= (SELECT max(b) FROM unnest(p_buckets) b) + p_width)
    THEN
        RETURN 0;
    END IF;
    IF v_tier.bucket_width IS NULL THEN
        -- Raw samples. Callers hold what keeps compression of these partitions away (ts_ingest
        -- a shared lock per partition, refresh_1m its refresh lock); concurrent restorers meet
        -- on the row locks of the DELETE. The restored rows are the same samples, already
        -- counted in the rollups: the invalidation trigger skips them (20_ingest.sql).
        PERFORM set_config('traksense.restoring', 'on', true);
        EXECUTE format(
            'WITH ' || v_keys || ', restored AS (
                 INSERT INTO %2$I (series_id, ts, v_num, v_bool, v_text)
                 SELECT g.series_id, d.ts, d.v_num, d.v_bool, d.v_text
                 FROM gone g
                 CROSS JOIN LATERAL ts_raw_slice(g.seg_start, 1, g.n_rows, g.t_us, g.t_first,
                                                 g.t_step, g.v_num, g.scale, g.k_base,
                                                 g.k_num, g.v_bool, g.v_text) d
                 RETURNING 1
             )
             SELECT count(*) FROM restored',
            v_tier.relation || '_z', v_tier.relation)
        INTO v_restored
        USING v_tier.partition_width, p_series, p_buckets, p_width;
        PERFORM set_config('traksense.restoring', 'off', true);
        RETURN v_restored;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('traksense.compress.' || p_tier));
    EXECUTE format(
        'WITH ' || v_keys || ', restored AS (
             INSERT INTO %2$I (series_id, bucket, v_sum, v_min, v_max, n)
             SELECT g.series_id, d.bucket, d.v_sum, d.v_min, d.v_max, d.n
             FROM gone g
             CROSS JOIN LATERAL ts_z_slice(g.seg_start, g.off0, $5, 1, g.n_rows, g.scale,
                                           g.k_base, g.sum_unit, g.offs, g.v_min, g.v_max,
                                           g.v_sum, g.n, g.k_min, g.k_max, g.k_max_w, g.k_sum,
                                           g.c_sum) d
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


REVOKE ALL ON FUNCTION ts_decompress_for(text, bigint[], timestamptz[], interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_decompress_segment(text, bigint, timestamptz) FROM PUBLIC;
