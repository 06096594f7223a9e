-- Frozen: the compressed store of raw samples, for the optional raw compression
-- (COMPRESS_RAW_AFTER_DAYS, off by default; docs/compression.md). The codec lives in
-- traksense/db/sql/55_compression.sql.
--
-- One row per (series, raw partition): the day's samples of that series as parallel arrays in
-- ts order. t_us holds each sample's offset from seg_start in microseconds (timestamptz's own
-- resolution, so decoding is exact); of the value arrays only the series' kind's is set. The
-- arrays are TOASTed with pglz (every server has it). Range-partitioned by seg_start with the
-- bounds of the raw partitions, so raw retention drops both together.

CREATE TABLE ts_measure_z (
    series_id bigint NOT NULL,
    seg_start timestamptz NOT NULL,   -- lower bound of the raw partition the samples belong to
    n_rows    integer NOT NULL CHECK (n_rows > 0),
    t_us      bigint[] COMPRESSION pglz NOT NULL,
    v_num     float8[] COMPRESSION pglz,
    v_bool    boolean[] COMPRESSION pglz,
    v_text    text[] COMPRESSION pglz,
    PRIMARY KEY (series_id, seg_start)
) PARTITION BY RANGE (seg_start);

-- Never readable by app_user: the raw tenant view and ts_read_raw decode it as the owner.
REVOKE ALL ON ts_measure_z FROM PUBLIC;
