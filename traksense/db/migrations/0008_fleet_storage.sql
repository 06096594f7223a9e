-- Frozen: fleet storage (issue 18, docs/compression.md, ADR-0009).
--
-- 1. The compressed raw store gets the forms a once-a-minute series needs:
--    - regular timestamps: samples exactly t_step microseconds apart (a poller stamping its
--      schedule) keep no t_us array; sample i (1-based) is at seg_start + t_first + (i - 1) *
--      t_step microseconds. Otherwise t_us as in 0004, t_first and t_step NULL.
--    - decimal-scaled values: every value of the segment is exactly (float8, bit for bit)
--      (k_base + k_num[i]) / scale with scale = 10^d, d in 0..4; then v_num is NULL. Otherwise
--      v_num as in 0004, scale, k_base and k_num NULL. ts_compress_partition checks every
--      element with the readers' decoding before it writes this form.
-- 2. Narrower partitions for the rollup tiers of a new database (1m: 1 day, 5m: 7 days, 1h: 28
--    days, instead of 7, 28 and 91): data is compressed a partition at a time, so a tier keeps on
--    average half a partition more uncompressed than COMPRESS_<TIER>_AFTER_DAYS says, which at a
--    once-a-minute fleet is most of the disk (docs/capacity.md). A database that already holds
--    partitions of a tier keeps its width (the bounds of existing partitions and their compressed
--    segments are fixed); all widths stay multiples of a day aligned on Monday 2000-01-03.

ALTER TABLE ts_measure_z
    ALTER COLUMN t_us DROP NOT NULL,
    ADD COLUMN t_first bigint,
    ADD COLUMN t_step bigint CHECK (t_step > 0),
    ADD COLUMN scale float8 CHECK (scale IN (1, 10, 100, 1000, 10000)),
    ADD COLUMN k_base bigint,
    ADD COLUMN k_num smallint[] COMPRESSION pglz,
    ADD CONSTRAINT ts_measure_z_times CHECK ((t_us IS NULL) = (t_step IS NOT NULL)
                                             AND (t_step IS NULL) = (t_first IS NULL)),
    ADD CONSTRAINT ts_measure_z_scaled CHECK ((k_num IS NULL) = (scale IS NULL)
                                              AND (scale IS NULL) = (k_base IS NULL));

UPDATE ts_tier t SET partition_width = w.width
FROM (VALUES ('1m', interval '1 day'), ('5m', interval '7 days'), ('1h', interval '28 days'))
     AS w(tier, width)
WHERE t.tier = w.tier AND NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = t.tier);
