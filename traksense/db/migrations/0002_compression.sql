-- Frozen: the compressed stores of the rollup tiers and the compression registry.
-- The codec (compress, decompress, decode views) lives in traksense/db/sql/55_compression.sql.
--
-- One row per (series, tier partition): the partition's rows of that series as parallel arrays,
-- ordered by bucket. The arrays are TOASTed with pglz; see docs/compression.md for the layout.
-- Each store is range-partitioned by seg_start with exactly the bounds of the tier's partitions,
-- so retention drops the compressed partition of a range together with the uncompressed one.

CREATE TABLE ts_measure_1m_z (
    series_id bigint NOT NULL,
    seg_start timestamptz NOT NULL,   -- lower bound of the tier partition the rows belong to
    n_rows    integer NOT NULL CHECK (n_rows > 0),
    off0      integer NOT NULL,       -- bucket index (in bucket widths from seg_start) of row 1
    offs      integer[],              -- bucket index of every row; NULL when rows are contiguous
    v_min     float8[] NOT NULL,
    v_max     float8[] NOT NULL,      -- element NULL: equal to v_min (bit for bit)
    v_sum     float8[] NOT NULL,      -- element NULL: equal to v_min * n (bit for bit)
    n         integer[] NOT NULL,
    PRIMARY KEY (series_id, seg_start)
) PARTITION BY RANGE (seg_start);
CREATE TABLE ts_measure_5m_z (LIKE ts_measure_1m_z INCLUDING ALL) PARTITION BY RANGE (seg_start);
CREATE TABLE ts_measure_1h_z (LIKE ts_measure_1m_z INCLUDING ALL) PARTITION BY RANGE (seg_start);

-- One row per compressed tier partition: where its compressed rows live and what the
-- uncompressed form measured when it was compressed (the "before" of the stats).
CREATE TABLE ts_compression (
    name          text PRIMARY KEY REFERENCES ts_partition (name) ON DELETE CASCADE,
    tier          text NOT NULL REFERENCES ts_tier (tier),
    z_name        text NOT NULL UNIQUE,
    rows_before   bigint NOT NULL,    -- rows of the largest compression of this partition
    bytes_before  bigint NOT NULL,    -- pg_total_relation_size of the partition at that time
    compressed_at timestamptz NOT NULL,
    seconds       float8 NOT NULL     -- duration of the last compression of the partition
);

-- Nothing here is ever readable by app_user: the tenant views decode it as the owner.
REVOKE ALL ON ts_measure_1m_z, ts_measure_5m_z, ts_measure_1h_z, ts_compression FROM PUBLIC;
