-- The tenant's catalog, one page at a time (GET /data/series, GET /data/devices).
--
-- Keyset pages on ts_series' identity index (tenant, device, point): the first page, and any
-- later one, costs an index range of one page whatever the number of series. Through the
-- security_barrier view the planner cannot use that index's order (the view is planned apart
-- from the ORDER BY and LIMIT around it, and sorted a million rows for each page), so these
-- functions read ts_series themselves, with the tenant taken only from the transaction's
-- binding (ts_current_tenant()), as the view does. Each statement is built with the call's
-- values as constants, so that an absent filter or cursor drops out of the plan.

CREATE OR REPLACE FUNCTION ts_series_page(
    p_device uuid, p_kind text, p_after_device uuid, p_after_point uuid, p_limit integer)
RETURNS TABLE (series_id bigint, device_id uuid, point_id uuid, kind text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
    IF ts_current_tenant() IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT s.series_id, s.device_id, s.point_id, s.kind FROM ts_series s
         WHERE s.tenant_id = %L %s %s %s
         ORDER BY s.device_id, s.point_id LIMIT %s',
        ts_current_tenant(),
        CASE WHEN p_device IS NOT NULL THEN format('AND s.device_id = %L', p_device) ELSE '' END,
        CASE WHEN p_kind IS NOT NULL THEN format('AND s.kind = %L', p_kind) ELSE '' END,
        CASE WHEN p_after_device IS NOT NULL
             THEN format('AND (s.device_id, s.point_id) > (%L::uuid, %L::uuid)',
                         p_after_device, p_after_point)
             ELSE '' END,
        greatest(least(p_limit, 100001), 0));
END
$$;
COMMENT ON FUNCTION ts_series_page(uuid, text, uuid, uuid, integer) IS
    'A page of the current tenant''s series in (device, point) order, after a (device, point) '
    'key, optionally of one device and one kind.';

-- A page of ts_series_page with each series' first and last sample (GET /data/series): the
-- spans without a tenant check per series (ts_raw_span), the page holding only the current
-- tenant's series.
CREATE OR REPLACE FUNCTION ts_series_catalog(
    p_device uuid, p_kind text, p_after_device uuid, p_after_point uuid, p_limit integer)
RETURNS TABLE (series_id bigint, device_id uuid, point_id uuid, kind text,
               first_ts timestamptz, last_ts timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
    SELECT p.series_id, p.device_id, p.point_id, p.kind, b.first_ts, b.last_ts
    FROM ts_series_page(p_device, p_kind, p_after_device, p_after_point, p_limit)
         WITH ORDINALITY AS p(series_id, device_id, point_id, kind, n)
    CROSS JOIN LATERAL ts_raw_span(p.series_id) AS b
    ORDER BY p.n
$$;
COMMENT ON FUNCTION ts_series_catalog(uuid, text, uuid, uuid, integer) IS
    'ts_series_page with each series'' first and last sample time.';

CREATE OR REPLACE FUNCTION ts_device_page(p_after_device uuid, p_limit integer)
RETURNS TABLE (device_id uuid, points bigint, last timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
BEGIN
    IF ts_current_tenant() IS NULL THEN
        RETURN;
    END IF;
    -- The devices first (an index range, grouped as it streams), then their series' spans.
    RETURN QUERY EXECUTE format(
        'SELECT d.device_id, count(*), max(b.last_ts)
         FROM (SELECT s.device_id FROM ts_series s WHERE s.tenant_id = %1$L %2$s
               GROUP BY s.device_id ORDER BY s.device_id LIMIT %3$s) d
         JOIN ts_series s ON s.tenant_id = %1$L AND s.device_id = d.device_id
         CROSS JOIN LATERAL ts_raw_span(s.series_id) AS b
         GROUP BY d.device_id',
        ts_current_tenant(),
        CASE WHEN p_after_device IS NOT NULL
             THEN format('AND s.device_id > %L', p_after_device) ELSE '' END,
        greatest(least(p_limit, 100001), 0));
END
$$;
COMMENT ON FUNCTION ts_device_page(uuid, integer) IS
    'A page of the current tenant''s devices in id order, after a device: each with its number '
    'of points and newest sample.';

REVOKE ALL ON FUNCTION ts_series_page(uuid, text, uuid, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_series_page(uuid, text, uuid, uuid, integer) TO app_user;
REVOKE ALL ON FUNCTION ts_series_catalog(uuid, text, uuid, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_series_catalog(uuid, text, uuid, uuid, integer) TO app_user;
REVOKE ALL ON FUNCTION ts_device_page(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_device_page(uuid, integer) TO app_user;
