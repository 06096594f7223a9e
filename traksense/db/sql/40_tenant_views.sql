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

CREATE OR REPLACE VIEW ts_measure_tenant WITH (security_barrier = true) AS
SELECT s.tenant_id, s.device_id, s.point_id, m.ts, m.v_num, m.v_bool, m.v_text, m.series_id
FROM ts_measure m
JOIN ts_series s ON s.series_id = m.series_id
WHERE s.tenant_id = ts_current_tenant();
COMMENT ON VIEW ts_measure_tenant IS
    'Raw samples of the current tenant (app.tenant_id); empty when it is unset.';

REVOKE ALL ON ts_series_tenant, ts_measure_tenant FROM PUBLIC;
GRANT SELECT ON ts_series_tenant, ts_measure_tenant TO app_user;
