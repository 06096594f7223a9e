-- What app_user may read: tenant-scoped views over the raw samples and the series catalog.
-- security_barrier keeps a caller's own predicates (possibly leaky functions) from being
-- evaluated before the tenant filter; comparisons on ids and times are leakproof, so the usual
-- per-series, per-range queries still push down to the indexes.

CREATE OR REPLACE VIEW ts_series_tenant WITH (security_barrier = true) AS
SELECT s.tenant_id, s.device_id, s.point_id, s.kind, s.series_id, s.created_at, s.counter
FROM ts_series s
WHERE s.tenant_id = ts_current_tenant();
COMMENT ON VIEW ts_series_tenant IS
    'Series (device, point, kind) of the current tenant (app.tenant_id); empty when it is unset.';

-- The decoder of the compressed raw samples (migrations 0004 and 0008, codec in
-- 57_compress.sql): elements p_i0 to p_i1 (1-based) of one day, as rows in stored order, which
-- is ts order. Times: t_us, each sample's offset from p_seg in microseconds (exact in float8
-- below 2^53), or, for samples on a regular grid (t_us NULL), a generate_series from t_first in
-- steps of t_step microseconds: one addition per sample. Values: v_num, or the scaled form
-- (k_base + k_num[i]) / scale (v_num NULL), or v_bool, or v_text. As ts_z_slice() for the
-- rollups: the arrays are sliced before they are unnested, in the select list, in lockstep (a
-- NULL array, or the series of a NULL grid, yields no rows and pads with NULLs); a small SQL
-- function that PostgreSQL inlines into its callers (the view below, ts_read_raw and the raw
-- restore); it reads nothing.
CREATE OR REPLACE FUNCTION ts_raw_slice(
    p_seg timestamptz, p_i0 integer, p_i1 integer, p_t_us bigint[], p_t_first bigint,
    p_t_step bigint, p_v_num float8[], p_scale float8, p_k_base bigint, p_k_num smallint[],
    p_v_bool boolean[], p_v_text text[])
RETURNS TABLE (ts timestamptz, v_num float8, v_bool boolean, v_text text)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT coalesce(u.g, p_seg + u.t * interval '1 microsecond'),
       coalesce(u.vn, (p_k_base + u.k)::float8 / p_scale), u.vb, u.vt
FROM (SELECT unnest(p_t_us[p_i0:p_i1]) AS t,
             generate_series(p_seg + (p_t_first + (p_i0 - 1) * p_t_step) * interval '1 microsecond',
                             p_seg + (p_t_first + (p_i1 - 1) * p_t_step) * interval '1 microsecond',
                             p_t_step * interval '1 microsecond') AS g,
             unnest(p_v_num[p_i0:p_i1]) AS vn, unnest(p_k_num[p_i0:p_i1]) AS k,
             unnest(p_v_bool[p_i0:p_i1]) AS vb, unnest(p_v_text[p_i0:p_i1]) AS vt) u
$$;

-- Internal: the compressed raw samples, decoded.
CREATE OR REPLACE VIEW ts_measure_zrows AS
SELECT z.series_id, d.ts, d.v_num, d.v_bool, d.v_text, z.seg_start
FROM ts_measure_z z
CROSS JOIN LATERAL ts_raw_slice(z.seg_start, 1, z.n_rows, z.t_us, z.t_first, z.t_step, z.v_num,
                                z.scale, z.k_base, z.k_num, z.v_bool, z.v_text) d;
COMMENT ON VIEW ts_measure_zrows IS 'Internal: the compressed raw samples, decoded.';
-- Its form before 0008.
DROP FUNCTION IF EXISTS ts_raw_slice(timestamptz, integer, integer, bigint[], float8[], boolean[],
                                     text[]);

-- Internal: every raw sample. They live in ts_measure, and with the optional raw compression
-- also in its compressed store, decoded by ts_measure_zrows (a sample is in one or the other).
-- `segment`, as in the tier views (60_tier_views.sql): the raw partition start for a compressed
-- sample, ts otherwise; a range query bounding it too skips compressed days outside the range.
-- Bare UNION ALL branches, so that a per-series ORDER BY ts is answered in index order
-- (ts_read_raw, 65_read.sql).
CREATE OR REPLACE VIEW ts_measure_rt AS
SELECT r.series_id, r.ts, r.v_num, r.v_bool, r.v_text, r.ts AS segment FROM ts_measure r
UNION ALL
SELECT z.series_id, z.ts, z.v_num, z.v_bool, z.v_text, z.seg_start FROM ts_measure_zrows z;
COMMENT ON VIEW ts_measure_rt IS 'Internal: all raw samples, compressed ones included.';

CREATE OR REPLACE VIEW ts_measure_tenant WITH (security_barrier = true) AS
SELECT s.tenant_id, s.device_id, s.point_id, m.ts, m.v_num, m.v_bool, m.v_text, m.series_id,
       m.segment
FROM ts_measure_rt m
JOIN ts_series s ON s.series_id = m.series_id
WHERE s.tenant_id = ts_current_tenant();
COMMENT ON VIEW ts_measure_tenant IS
    'Raw samples of the current tenant (app.tenant_id), compressed ones included; empty when '
    'it is unset. segment: see 40_tenant_views.sql.';

REVOKE ALL ON ts_measure_zrows, ts_measure_rt, ts_series_tenant, ts_measure_tenant FROM PUBLIC;
GRANT SELECT ON ts_series_tenant, ts_measure_tenant TO app_user;
