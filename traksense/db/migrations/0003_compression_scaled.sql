-- Frozen: decimal-scaled integer form of the compressed value columns (docs/compression.md).
--
-- A row of ts_measure_<tier>_z with `scale` NULL is in the 0002 form (float8 arrays). With
-- `scale` = p = 10^d (d in 0..4), the segment's v_min and v_max are exactly integers / p
-- (float8, bit for bit) but for exceptions, and the row holds integers instead:
--   kmin    = k_base + k_min[i]                          k_min smallint[]
--   kx      = k_max[i] + 128, or k_max_w[i] if NULL      k_max "char"[] (1 byte), k_max_w smallint[]
--   v_min   = kmin / p,   v_max = (kmin + kx) / p
--             (where k_min[i] is NULL: an exception, v_min[i] and v_max[i] as in 0002)
--   v_sum   = v_sum[i] if not NULL (an exception, float8), else v_min * n if k_sum[i] is NULL,
--             else ((n * (2 * kmin + kx)) / 2 + k_sum[i]) / p + c_sum[i] * sum_unit
--             (integer division; c_sum: an exact correction in units of sum_unit, a power of 2)
-- ts_compress_partition writes an element in the scaled form only after checking that it
-- decodes bit-identically with the functions the readers use (55_compression.sql). v_min,
-- v_max and v_sum become nullable (NULL arrays in the scaled form without exceptions).

ALTER TABLE ts_measure_1m_z
    ALTER COLUMN v_min DROP NOT NULL, ALTER COLUMN v_max DROP NOT NULL,
    ALTER COLUMN v_sum DROP NOT NULL,
    ADD COLUMN scale float8 CHECK (scale IN (1, 10, 100, 1000, 10000)),
    ADD COLUMN k_base bigint,
    ADD COLUMN k_min smallint[],
    ADD COLUMN k_max "char"[],
    ADD COLUMN k_max_w smallint[],
    ADD COLUMN k_sum smallint[],
    ADD COLUMN c_sum smallint[],
    ADD COLUMN sum_unit float8;
ALTER TABLE ts_measure_5m_z
    ALTER COLUMN v_min DROP NOT NULL, ALTER COLUMN v_max DROP NOT NULL,
    ALTER COLUMN v_sum DROP NOT NULL,
    ADD COLUMN scale float8 CHECK (scale IN (1, 10, 100, 1000, 10000)),
    ADD COLUMN k_base bigint,
    ADD COLUMN k_min smallint[],
    ADD COLUMN k_max "char"[],
    ADD COLUMN k_max_w smallint[],
    ADD COLUMN k_sum smallint[],
    ADD COLUMN c_sum smallint[],
    ADD COLUMN sum_unit float8;
ALTER TABLE ts_measure_1h_z
    ALTER COLUMN v_min DROP NOT NULL, ALTER COLUMN v_max DROP NOT NULL,
    ALTER COLUMN v_sum DROP NOT NULL,
    ADD COLUMN scale float8 CHECK (scale IN (1, 10, 100, 1000, 10000)),
    ADD COLUMN k_base bigint,
    ADD COLUMN k_min smallint[],
    ADD COLUMN k_max "char"[],
    ADD COLUMN k_max_w smallint[],
    ADD COLUMN k_sum smallint[],
    ADD COLUMN c_sum smallint[],
    ADD COLUMN sum_unit float8;
