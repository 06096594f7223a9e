-- What each tier holds on disk, for `traksense storage` and the status page
-- (traksense/rollups/storage.py projects it over the retention), state rows included. Owner only.
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
    -- ts_state_z holds every tier's segments: its rows per tier, read once, and its size.
    v_state_rows constant jsonb := (SELECT coalesce(jsonb_object_agg(z.tier, z.n), '{}')
                                    FROM (SELECT s.tier, sum(s.n_rows) AS n FROM ts_state_z s
                                          GROUP BY s.tier) z);
    v_state_all constant numeric := (SELECT sum(s.n_rows) FROM ts_state_z s);
    v_state_bytes constant bigint := pg_total_relation_size('ts_state_z');
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
        IF t.bucket_width IS NOT NULL THEN
            -- The state rows of boolean, text and counter points (0011_state_storage.sql) count
            -- with their tier: the sibling partitions, and the tier's share of ts_state_z (its
            -- bytes apportioned by rows, one table holding every tier's segments).
            SELECT rows_plain + coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint,
                   bytes_plain + coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
            INTO rows_plain, bytes_plain
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass('ts_state_' || t.tier);
            rows_compressed := rows_compressed + coalesce((v_state_rows ->> t.tier)::bigint, 0);
            bytes_compressed := bytes_compressed
                + coalesce(round(v_state_bytes * (v_state_rows ->> t.tier)::numeric
                                 / nullif(v_state_all, 0)), 0)::bigint;
            IF rows_per_day IS NOT NULL THEN
                rows_per_day := rows_per_day
                    + ((SELECT coalesce(sum(z.n_rows), 0) FROM ts_state_z z
                        WHERE z.tier = t.tier AND z.seg_start = v_last.lo)
                       + coalesce((SELECT greatest(c.reltuples, 0) FROM pg_class c
                                   WHERE c.oid = to_regclass(ts_state_partition(t.tier, v_last.lo))),
                                  0))
                      / partition_days;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION ts_storage() IS
    'Per tier: partition width, uncompressed rows (estimated) and bytes, compressed rows and '
    'bytes, rows a day (from the newest ended partition). Owner only.';
REVOKE ALL ON FUNCTION ts_storage() FROM PUBLIC;
