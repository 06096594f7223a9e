-- What app_user may read: tenant-scoped views over the raw samples and the series catalog.
-- security_barrier keeps a caller's own predicates (possibly leaky functions) from being
-- evaluated before the tenant filter; comparisons on ids and times are leakproof, so the usual
-- per-series, per-range queries still push down to the indexes.

CREATE OR REPLACE VIEW ts_series_tenant WITH (security_barrier = true) AS
SELECT s.tenant_id, s.device_id, s.point_id, s.kind, s.series_id, s.created_at
FROM ts_series s
WHERE s.tenant_id = ts_current_tenant();
COMMENT ON VIEW ts_series_tenant IS
    'Series (device, point, kind) of the current tenant (app.tenant_id); empty when it is unset.';

-- Internal: the compressed raw samples, decoded (optional raw compression: migration 0004, codec
-- in 55_compression.sql). t_us is each sample's offset from seg_start in microseconds, exact in
-- float8 below 2^53.
-- (Unnested in the select list, in lockstep: see the rollups' zrows views.)
CREATE OR REPLACE VIEW ts_measure_zrows AS
SELECT u.series_id, u.seg_start + u.t * interval '1 microsecond' AS ts,
       u.vn AS v_num, u.vb AS v_bool, u.vt AS v_text, u.seg_start
FROM (SELECT z.series_id, z.seg_start, unnest(z.t_us) AS t, unnest(z.v_num) AS vn,
             unnest(z.v_bool) AS vb, unnest(z.v_text) AS vt
      FROM ts_measure_z z) u;
COMMENT ON VIEW ts_measure_zrows IS 'Internal: the compressed raw samples, decoded.';

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
