-- What each tier holds on disk, for `traksense storage` and the status page
-- (traksense/rollups/storage.py projects it over the retention). Owner only.
--
-- Uncompressed rows are the planner's estimate (pg_class.reltuples, kept by ANALYZE and
-- autovacuum): an exact count of a fleet's raw partitions would read billions of rows.
-- Compressed rows are exact (the sum of n_rows over the compressed store, one row per series and
-- partition, as ts_compression_stats counts them). rows_per_day: the rows of the newest partition
-- that has ended (both forms) over its width in days; NULL before one has.
CREATE OR REPLACE FUNCTION ts_storage()
RETURNS TABLE (tier text, partition_days float8, rows_plain bigint, bytes_plain bigint,
               rows_compressed bigint, bytes_compressed bigint, rows_per_day float8)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    t record;
    v_z text;
    v_last ts_partition%ROWTYPE;
    v_last_rows float8;
BEGIN
    FOR t IN SELECT * FROM ts_tier ORDER BY bucket_width NULLS FIRST LOOP
        tier := t.tier;
        partition_days := extract(epoch FROM t.partition_width) / 86400;
        v_z := t.relation || '_z';
        SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint,
               coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
        INTO rows_plain, bytes_plain
        FROM ts_partition p JOIN pg_class c ON c.oid = to_regclass(p.name)
        WHERE p.tier = t.tier;
        EXECUTE format('SELECT coalesce(sum(n_rows), 0)::bigint FROM %I', v_z)
        INTO rows_compressed;
        SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint
        INTO bytes_compressed
        FROM pg_inherits i WHERE i.inhparent = to_regclass(v_z);
        SELECT * INTO v_last FROM ts_partition p
        WHERE p.tier = t.tier AND p.hi <= now() AND to_regclass(p.name) IS NOT NULL
        ORDER BY p.hi DESC LIMIT 1;
        rows_per_day := NULL;
        IF FOUND THEN
            EXECUTE format('SELECT coalesce(sum(n_rows), 0) FROM %I WHERE seg_start = $1', v_z)
            INTO v_last_rows USING v_last.lo;
            rows_per_day := (v_last_rows + (SELECT greatest(c.reltuples, 0) FROM pg_class c
                                            WHERE c.oid = to_regclass(v_last.name)))
                            / partition_days;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ts_storage() IS
    'Per tier: partition width, uncompressed rows (estimated) and bytes, compressed rows and '
    'bytes, rows a day (from the newest ended partition). Owner only.';
REVOKE ALL ON FUNCTION ts_storage() FROM PUBLIC;
