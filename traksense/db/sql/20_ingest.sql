-- The one write path for raw samples, and the invalidation triggers that keep rollups exact.

-- The current tenant: transaction-local setting, NULL when unset or after RESET (which leaves '').
CREATE OR REPLACE FUNCTION ts_current_tenant()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid
$$;
COMMENT ON FUNCTION ts_current_tenant() IS
    'The tenant of the current transaction (app.tenant_id), or NULL: every tenant view filters on it.';

-- Write a batch of samples for the current tenant, atomically and idempotently.
--
-- Arrays are parallel, one element per sample; exactly one of p_num, p_bool, p_text is non-NULL
-- per sample and decides its kind. The tenant is never a parameter: it comes from the transaction's
-- app.tenant_id, so app_user cannot write another tenant's rows through this function without
-- first claiming that tenant (see docs/tenancy.md).
--
-- Semantics: a sample whose (device, point, ts) is already stored with the same value is a
-- duplicate and changes nothing; with a different value it overwrites the stored one (last write
-- wins, and the rollups are recomputed for its bucket). Within one batch the last occurrence of a
-- key wins and earlier ones count as duplicates. A value whose kind differs from the point's
-- recorded kind rejects the whole batch with SQLSTATE TS400.
CREATE OR REPLACE FUNCTION ts_ingest(
    p_device text[], p_point text[], p_ts timestamptz[],
    p_num float8[], p_bool boolean[], p_text text[],
    OUT accepted bigint, OUT duplicates bigint, OUT overwritten bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tenant uuid := ts_current_tenant();
    v_total bigint := coalesce(cardinality(p_ts), 0);
    v_width interval;
    v_missing timestamptz[];
    v_bad record;
    v_inserted bigint;
    v_in_batch_dups bigint;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'no tenant in this transaction (app.tenant_id is unset)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF v_total = 0 THEN
        accepted := 0; duplicates := 0; overwritten := 0;
        RETURN;
    END IF;

    CREATE TEMP TABLE IF NOT EXISTS ts_ingest_batch (
        ord bigint, device_id uuid, point_id uuid, ts timestamptz,
        v_num float8, v_bool boolean, v_text text, kind text, series_id bigint
    ) ON COMMIT DELETE ROWS;
    DELETE FROM ts_ingest_batch;  -- a second call in one transaction starts empty
    INSERT INTO ts_ingest_batch (ord, device_id, point_id, ts, v_num, v_bool, v_text, kind)
    SELECT u.ord, u.d::uuid, u.p::uuid, u.ts, u.n, u.b, u.t,
           CASE WHEN u.n IS NOT NULL THEN 'numeric' WHEN u.b IS NOT NULL THEN 'boolean'
                ELSE 'text' END
    FROM unnest(p_device, p_point, p_ts, p_num, p_bool, p_text) WITH ORDINALITY
         AS u(d, p, ts, n, b, t, ord);

    -- One kind per point within the batch, and the same kind as already recorded.
    SELECT b.device_id, b.point_id, min(b.kind) AS k1, max(b.kind) AS k2, min(s.kind) AS known
    INTO v_bad
    FROM ts_ingest_batch b
    LEFT JOIN ts_series s
           ON s.tenant_id = v_tenant AND s.device_id = b.device_id AND s.point_id = b.point_id
    GROUP BY b.device_id, b.point_id
    HAVING min(b.kind) <> max(b.kind) OR min(b.kind) <> coalesce(min(s.kind), min(b.kind))
    LIMIT 1;
    IF FOUND THEN
        IF v_bad.known IS NOT NULL AND v_bad.k1 = v_bad.k2 THEN
            RAISE EXCEPTION 'point % of device % holds % values; got a % value',
                v_bad.point_id, v_bad.device_id, v_bad.known, v_bad.k1 USING ERRCODE = 'TS400';
        END IF;
        RAISE EXCEPTION 'point % of device % gets both % and % values in one batch',
            v_bad.point_id, v_bad.device_id, v_bad.k1, v_bad.k2 USING ERRCODE = 'TS400';
    END IF;

    -- New series join the catalog (a concurrent batch may add the same one: DO NOTHING).
    INSERT INTO ts_series (tenant_id, device_id, point_id, kind)
    SELECT DISTINCT v_tenant, b.device_id, b.point_id, b.kind FROM ts_ingest_batch b
    WHERE NOT EXISTS (SELECT FROM ts_series s WHERE s.tenant_id = v_tenant
                      AND s.device_id = b.device_id AND s.point_id = b.point_id)
    ON CONFLICT ON CONSTRAINT ts_series_identity DO NOTHING;
    UPDATE ts_ingest_batch b SET series_id = s.series_id
    FROM ts_series s
    WHERE s.tenant_id = v_tenant AND s.device_id = b.device_id AND s.point_id = b.point_id;

    -- Partitions for days that have none yet.
    SELECT partition_width INTO STRICT v_width FROM ts_tier WHERE tier = 'raw';
    SELECT array_agg(DISTINCT d.lo) INTO v_missing
    FROM (SELECT DISTINCT date_bin(v_width, ts, timestamptz '2000-01-03 00:00:00+00') AS lo
          FROM ts_ingest_batch) d
    WHERE NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = 'raw' AND p.lo = d.lo);
    IF v_missing IS NOT NULL THEN
        PERFORM ts_create_partitions('raw', v_missing);
    END IF;

    -- Last occurrence of a key within the batch wins; earlier ones are duplicates.
    DELETE FROM ts_ingest_batch b
    USING ts_ingest_batch later
    WHERE later.series_id = b.series_id AND later.ts = b.ts AND later.ord > b.ord;
    GET DIAGNOSTICS v_in_batch_dups = ROW_COUNT;

    WITH written AS (
        INSERT INTO ts_measure (series_id, ts, v_num, v_bool, v_text)
        SELECT series_id, ts, v_num, v_bool, v_text FROM ts_ingest_batch
        ON CONFLICT (series_id, ts) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) INTO v_inserted FROM written;

    -- Only when some keys were already stored: overwrite those whose value differs.
    overwritten := 0;
    IF v_inserted < v_total - v_in_batch_dups THEN
        UPDATE ts_measure m
        SET v_num = b.v_num, v_bool = b.v_bool, v_text = b.v_text
        FROM ts_ingest_batch b
        WHERE m.series_id = b.series_id AND m.ts = b.ts
          AND (m.v_num, m.v_bool, m.v_text) IS DISTINCT FROM (b.v_num, b.v_bool, b.v_text);
        GET DIAGNOSTICS overwritten = ROW_COUNT;
    END IF;

    accepted := v_inserted + overwritten;
    duplicates := v_total - accepted;
END
$$;
COMMENT ON FUNCTION ts_ingest(text[], text[], timestamptz[], float8[], boolean[], text[]) IS
    'Write a batch of raw samples for the current tenant (app.tenant_id): atomic, idempotent, '
    'last write wins. Returns accepted, duplicates and overwritten counts.';

-- Every change of numeric raw data marks its 1-minute bucket for recomputation. Statement-level
-- triggers with transition tables cost one set-based INSERT per statement, whatever the row count.
CREATE OR REPLACE FUNCTION ts_measure_invalidate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO ts_invalidation (tier, series_id, bucket)
        SELECT DISTINCT '1m', series_id, date_bin('1 minute', ts, timestamptz '2000-01-03 00:00:00+00')
        FROM ts_new_rows WHERE v_num IS NOT NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO ts_invalidation (tier, series_id, bucket)
        SELECT DISTINCT '1m', series_id, date_bin('1 minute', ts, timestamptz '2000-01-03 00:00:00+00')
        FROM ts_old_rows WHERE v_num IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER ts_measure_invalidate_insert
    AFTER INSERT ON ts_measure REFERENCING NEW TABLE AS ts_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ts_measure_invalidate();
CREATE OR REPLACE TRIGGER ts_measure_invalidate_update
    AFTER UPDATE ON ts_measure REFERENCING OLD TABLE AS ts_old_rows NEW TABLE AS ts_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ts_measure_invalidate();
CREATE OR REPLACE TRIGGER ts_measure_invalidate_delete
    AFTER DELETE ON ts_measure REFERENCING OLD TABLE AS ts_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ts_measure_invalidate();

REVOKE ALL ON FUNCTION ts_ingest(text[], text[], timestamptz[], float8[], boolean[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_ingest(text[], text[], timestamptz[], float8[], boolean[], text[]) TO app_user;
REVOKE ALL ON FUNCTION ts_create_partitions(text, timestamptz[]) FROM PUBLIC;
