-- Frozen: state rollups stored like the numeric tiers (issue 19, DESIGN §5; docs/rollups.md
-- "State rollups and counters", docs/compression.md "State rollups").
--
-- 1. ts_state_1m, _5m and _1h become partitioned by bucket, each partition the sibling of the
--    numeric tier's partition with the same bounds (ts_state_<tier>_pYYYYMMDD beside
--    ts_measure_<tier>_pYYYYMMDD). ts_create_partitions creates both (10_partitions.sql), and
--    retention drops the state one after the numeric one, in a transaction of its own
--    (ts_state_expire): no DELETE of expired rows.
-- 2. ts_state_z: the compressed state rows, one row per (tier, series, partition), each column
--    an array in bucket order (pglz):
--      offs          the buckets, as multiples of the tier's width from seg_start; NULL when the
--                    rows are consecutive buckets from first_bucket (a polled point's every
--                    bucket)
--      t_first_us,   the first and last sample's instants, microseconds from the bucket's start
--      t_last_us
--      scale,        a counter's readings decimal-scaled, when every v_first and v_last of the
--      k_first,      segment is exactly (bit for bit) k / scale, scale = 10^d, d in 0..4 (what
--      k_last        ts_z_exact checks): k_first the differences between consecutive first
--                    readings (the first one whole), k_last each last reading less the first;
--                    v_first and v_last are then NULL (a meter's readings only grow: the
--                    differences are small and repeat, which pglz finds)
--      the rest      the columns of ts_state_1m as they are; a column whose every value is NULL
--                    (s_first of a counter, v_first of a boolean) is NULL itself
--    The numeric compression job compresses a tier partition's sibling with it
--    (ts_compress_partition, 57_compress.sql; encoding in 58_state_compress.sql).
--
-- Rows move with their bounds: the old unpartitioned tables are copied into new partitioned
-- ones, a partition made beside every numeric partition of the tier. The old
-- tables' row types are used by the functions of 54_state_refresh.sql and 69_*.sql, which the
-- CASCADE drops; every migrate applies those definitions again (traksense/db/apps.py).
DO $migrate$
DECLARE
    t record;
    v_lo timestamptz;
    v_name text;
BEGIN
    FOR t IN SELECT tier, partition_width FROM ts_tier WHERE tier IN ('1m', '5m', '1h') LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', 'ts_state_' || t.tier,
                       'ts_state_' || t.tier || '_old');
        EXECUTE format('ALTER INDEX %I RENAME TO %I', 'ts_state_' || t.tier || '_pkey',
                       'ts_state_' || t.tier || '_old_pkey');
        EXECUTE format('ALTER INDEX %I RENAME TO %I', 'ts_state_' || t.tier || '_bucket',
                       'ts_state_' || t.tier || '_old_bucket');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
                        PARTITION BY RANGE (bucket)',
                       'ts_state_' || t.tier, 'ts_state_' || t.tier || '_old');
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (series_id, bucket)', 'ts_state_' || t.tier);
        -- The refresh of the next tier reads a tier's new rows by time, across series.
        EXECUTE format('CREATE INDEX %I ON %I (bucket)', 'ts_state_' || t.tier || '_bucket',
                       'ts_state_' || t.tier);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', 'ts_state_' || t.tier);
        -- State rows where the numeric tier has no partition (a range of boolean and text
        -- points only): the numeric partition too, so that compression and retention, which go
        -- by the numeric partitions, find them. (ts_create_partitions exists wherever there
        -- are state rows: the definitions were applied by the migrate that made them.)
        FOR v_lo IN EXECUTE format(
            'SELECT DISTINCT date_bin($2, s.bucket, timestamptz ''2000-01-03 00:00:00+00'')
             FROM %I s
             WHERE NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = $1 AND p.lo =
                 date_bin($2, s.bucket, timestamptz ''2000-01-03 00:00:00+00''))',
            'ts_state_' || t.tier || '_old')
            USING t.tier, t.partition_width
        LOOP
            PERFORM ts_create_partitions(t.tier, ARRAY[v_lo]);
        END LOOP;
        FOR v_lo IN SELECT p.lo FROM ts_partition p WHERE p.tier = t.tier LOOP
            v_name := 'ts_state_' || t.tier || '_p' || to_char(v_lo AT TIME ZONE 'UTC', 'YYYYMMDD');
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                           v_name, 'ts_state_' || t.tier, v_lo, v_lo + t.partition_width);
            EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', v_name);
        END LOOP;
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', 'ts_state_' || t.tier,
                       'ts_state_' || t.tier || '_old');
        EXECUTE format('DROP TABLE %I CASCADE', 'ts_state_' || t.tier || '_old');
    END LOOP;
END
$migrate$;

CREATE TABLE ts_state_z (
    tier         text NOT NULL CHECK (tier IN ('1m', '5m', '1h')),
    series_id    bigint NOT NULL,
    seg_start    timestamptz NOT NULL,   -- the partition's lower bound
    first_bucket timestamptz NOT NULL,
    last_bucket  timestamptz NOT NULL,
    n_rows       integer NOT NULL CHECK (n_rows > 0),
    offs         integer[] COMPRESSION pglz,
    n            integer[] COMPRESSION pglz NOT NULL,
    t_first_us   bigint[] COMPRESSION pglz NOT NULL,
    t_last_us    bigint[] COMPRESSION pglz NOT NULL,
    s_first      text[] COMPRESSION pglz,
    s_last       text[] COMPRESSION pglz,
    changes      integer[] COMPRESSION pglz NOT NULL,
    time_in      jsonb[] COMPRESSION pglz NOT NULL,
    v_first      float8[] COMPRESSION pglz,
    v_last       float8[] COMPRESSION pglz,
    delta        float8[] COMPRESSION pglz,
    scale        float8 CHECK (scale IN (1, 10, 100, 1000, 10000)),
    k_first      bigint[] COMPRESSION pglz,
    k_last       bigint[] COMPRESSION pglz,
    CHECK ((scale IS NULL) = (k_first IS NULL) AND (k_first IS NULL) = (k_last IS NULL)),
    PRIMARY KEY (tier, series_id, seg_start)
);
REVOKE ALL ON ts_state_z FROM PUBLIC;
