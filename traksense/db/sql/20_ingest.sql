-- The one write path for raw samples. (The invalidation trigger on ts_measure that keeps the
-- rollups exact is in 51_invalidation.sql.)

-- The current tenant: the transaction's binding (15_tenant_binding.sql), NULL when unbound.
-- PARALLEL RESTRICTED: the binding is valid only on its own backend, so a parallel worker
-- would read NULL (an empty answer, never another tenant's).
CREATE OR REPLACE FUNCTION ts_current_tenant()
RETURNS uuid
LANGUAGE sql STABLE PARALLEL RESTRICTED
AS $$
    SELECT public.ts_bound_tenant()
$$;
COMMENT ON FUNCTION ts_current_tenant() IS
    'The tenant bound to the current transaction (ts_bind_key), or NULL: every tenant view '
    'filters on it.';

-- Write a batch of samples for the current tenant, atomically and idempotently.
--
-- Arrays are parallel, one element per sample; exactly one of p_num, p_bool, p_text is non-NULL
-- per sample and decides its kind (a value array that no sample uses may be passed as NULL).
-- The tenant is never a parameter: it comes from the transaction's binding (ts_bind_key), so
-- app_user cannot write another tenant's rows through this function without that tenant's key
-- (see docs/tenancy.md).
--
-- Semantics: a sample whose (device, point, ts) is already stored with the same value is a
-- duplicate and changes nothing; with a different value it overwrites the stored one (last write
-- wins, and the rollups are recomputed for its bucket). Within one batch the last occurrence of a
-- key wins and earlier ones count as duplicates. A value whose kind differs from the point's
-- recorded kind, or two kinds for one point in a batch, reject the whole batch with SQLSTATE
-- TS400.
--
-- Speed: per-sample work is one pass over the arrays joined to the batch's few distinct keys.
-- New data (the common case) goes in with a plain INSERT, ~30% cheaper than ON CONFLICT's
-- speculative insertion; a unique violation there rolls back just that attempt and the general
-- ON CONFLICT path runs instead. No per-key work grows with the number of series in a batch
-- beyond one catalog probe and one index insertion per sample (see issue 15's figures in
-- docs/capacity.md).
CREATE OR REPLACE FUNCTION ts_ingest(
    p_device text[], p_point text[], p_ts timestamptz[],
    p_num float8[], p_bool boolean[], p_text text[],
    OUT accepted bigint, OUT duplicates bigint, OUT overwritten bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
-- The batch's arrays join the catalog and each other by hash, and the catalog is read by its
-- index: the planner, estimating arrays at a guessed size, would otherwise sort 10,000 text
-- keys for merge joins or scan the whole catalog (measured: 35 ms of a 95 ms batch).
SET enable_mergejoin = off
SET enable_seqscan = off
AS $$
DECLARE
    v_tenant uuid := ts_current_tenant();
    v_total bigint := coalesce(cardinality(p_ts), 0);
    v_kind text;
    -- The batch's distinct (device, point) keys as sent, their kinds and series ids.
    v_d text[];
    v_p text[];
    v_k text[];
    v_sid bigint[];
    v_msg text;
    v_lo timestamptz;
    v_hi timestamptz;
    v_width interval;
    v_starts timestamptz[];
    v_inserted bigint;
    v_known bigint;
    v_round integer;
    v_devices uuid[];
    v_by_device boolean;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'no tenant in this transaction (no key bound it)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    accepted := 0; duplicates := 0; overwritten := 0;
    -- Only ts_decompress_for may mark rows as restored (the trigger skips them), not a caller.
    PERFORM set_config('traksense.restoring', 'off', true);
    IF v_total = 0 THEN
        RETURN;
    END IF;
    -- unnest() pads shorter arrays with NULLs: refuse arrays of different lengths.
    IF coalesce(cardinality(p_device), -1) <> v_total OR coalesce(cardinality(p_point), -1) <> v_total
       OR coalesce(cardinality(p_num), v_total) <> v_total
       OR coalesce(cardinality(p_bool), v_total) <> v_total
       OR coalesce(cardinality(p_text), v_total) <> v_total THEN
        RAISE EXCEPTION 'ts_ingest: the arrays must all have one element per sample'
            USING ERRCODE = 'TS400';
    END IF;

    IF num_nonnulls(p_num, p_bool, p_text) = 1 AND array_position(p_num, NULL) IS NULL
       AND array_position(p_bool, NULL) IS NULL AND array_position(p_text, NULL) IS NULL THEN
        -- One value array without NULLs: every sample has its kind, no per-sample check.
        v_kind := CASE WHEN p_num IS NOT NULL THEN 'numeric'
                       WHEN p_bool IS NOT NULL THEN 'boolean' ELSE 'text' END;
        SELECT array_agg(k.d), array_agg(k.p), array_agg(v_kind)
        INTO v_d, v_p, v_k
        FROM (SELECT DISTINCT d, p FROM unnest(p_device, p_point) AS u(d, p)) k;
    ELSE
        -- Mixed kinds: each key must get one kind, each sample exactly one value.
        SELECT array_agg(g.d), array_agg(g.p), array_agg(g.k1),
               min(CASE WHEN g.nv THEN 'every sample needs exactly one of a number, a boolean '
                                        || 'or a text value'
                        WHEN g.k1 <> g.k2 THEN format('point %s of device %s gets both %s and %s '
                                                      || 'values in one batch', g.p, g.d, g.k1, g.k2)
                   END)
        INTO v_d, v_p, v_k, v_msg
        FROM (SELECT u.d, u.p, min(u.kind) AS k1, max(u.kind) AS k2, bool_or(u.nv <> 1) AS nv
              FROM (SELECT d, p, num_nonnulls(n, b, t) AS nv,
                           CASE WHEN n IS NOT NULL THEN 'numeric'
                                WHEN b IS NOT NULL THEN 'boolean' ELSE 'text' END AS kind
                    FROM unnest(p_device, p_point, p_num, p_bool, p_text) AS x(d, p, n, b, t)) u
              GROUP BY u.d, u.p) g;
        IF v_msg IS NOT NULL THEN
            RAISE EXCEPTION '%', v_msg USING ERRCODE = 'TS400';
        END IF;
    END IF;

    -- Series ids in key order, and the recorded kinds checked. Known series first: in the
    -- steady state every key is known, and the lookup is all the catalog costs. A gateway's
    -- batch holds several points of each device: then one index scan fetches every series of
    -- the batch's devices (an index search per device, not per key: 40 % less time at five
    -- points a device), else one probe per key. New series join the catalog (a concurrent
    -- batch may add the same one: DO NOTHING), and the lookup runs again (so that two
    -- spellings of one uuid with different kinds, or a concurrent writer, are caught too).
    v_devices := ARRAY(SELECT DISTINCT d::uuid FROM unnest(v_d) AS d);
    v_by_device := cardinality(v_devices) * 2 <= cardinality(v_d);
    FOR v_round IN 1..2 LOOP
        WITH s AS MATERIALIZED (
            SELECT s.series_id, s.device_id, s.point_id, s.kind
            FROM ts_series s
            WHERE v_by_device AND s.tenant_id = v_tenant AND s.device_id = ANY (v_devices)
            UNION ALL
            SELECT DISTINCT s.series_id, s.device_id, s.point_id, s.kind
            FROM unnest(v_d, v_p) AS k(d, p)
            JOIN ts_series s ON s.tenant_id = v_tenant AND s.device_id = k.d::uuid
                            AND s.point_id = k.p::uuid
            WHERE NOT v_by_device)
        SELECT array_agg(s.series_id ORDER BY k.i), count(s.series_id),
               min(CASE WHEN s.kind <> k.kind THEN format('point %s of device %s holds %s values; '
                                                          || 'got a %s value', k.p, k.d, s.kind, k.kind)
                   END)
        INTO v_sid, v_known, v_msg
        FROM unnest(v_d, v_p, v_k) WITH ORDINALITY AS k(d, p, kind, i)
        LEFT JOIN s ON s.device_id = k.d::uuid AND s.point_id = k.p::uuid;
        EXIT WHEN v_known = cardinality(v_d) OR v_round = 2;
        INSERT INTO ts_series (tenant_id, device_id, point_id, kind)
        SELECT v_tenant, k.d::uuid, k.p::uuid, min(k.kind)
        FROM unnest(v_d, v_p, v_k) AS k(d, p, kind)
        WHERE NOT EXISTS (SELECT FROM ts_series s WHERE s.tenant_id = v_tenant
                          AND s.device_id = k.d::uuid AND s.point_id = k.p::uuid)
        GROUP BY k.d::uuid, k.p::uuid
        ON CONFLICT ON CONSTRAINT ts_series_identity DO NOTHING;
    END LOOP;
    IF v_msg IS NOT NULL THEN
        RAISE EXCEPTION '%', v_msg USING ERRCODE = 'TS400';
    END IF;
    IF v_known <> cardinality(v_d) THEN
        RAISE EXCEPTION 'ts_ingest: a series of the batch vanished from the catalog';
    END IF;

    -- Partitions for the batch's time range: every partition between its first and last sample
    -- when that is a few, else only those holding a sample.
    SELECT min(t), max(t) INTO v_lo, v_hi FROM unnest(p_ts) AS t;
    SELECT partition_width INTO STRICT v_width FROM ts_tier WHERE tier = 'raw';
    IF v_hi - v_lo <= 7 * v_width THEN
        v_starts := ARRAY(SELECT generate_series(ts_partition_start('raw', v_lo), v_hi, v_width));
    ELSE
        v_starts := ARRAY(SELECT DISTINCT date_bin(v_width, t, timestamptz '2000-01-03 00:00:00+00')
                          FROM unnest(p_ts) AS t);
    END IF;
    IF EXISTS (SELECT FROM unnest(v_starts) AS s(lo)
               WHERE NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = 'raw' AND p.lo = s.lo))
    THEN
        PERFORM ts_create_partitions('raw', v_starts);
    END IF;

    -- Optional raw compression (57_compress.sql): keep compression away from the batch's
    -- partitions until this transaction ends, and restore the compressed segments the batch
    -- lands in, so that duplicates and overwrites are decided against every stored sample.
    PERFORM pg_advisory_xact_lock_shared(ts_raw_partition_lock(s.lo), 0)
    FROM unnest(v_starts) AS s(lo);
    IF EXISTS (SELECT FROM ts_partition p WHERE p.tier = 'raw' AND p.compressed_at IS NOT NULL
               AND p.hi > v_lo AND p.lo <= v_hi) THEN
        PERFORM ts_decompress_for('raw', array_agg(k.sid), array_agg(u.ts))
        FROM unnest(p_device, p_point, p_ts) AS u(d, p, ts)
        JOIN unnest(v_d, v_p, v_sid) AS k(d, p, sid) ON k.d = u.d AND k.p = u.p;
    END IF;

    -- The invalidation trigger (51_invalidation.sql) skips its transition table when the whole
    -- batch lies at or above the 1m invalidation threshold: it is told the batch's start.
    PERFORM set_config('traksense.batch_lo', v_lo::text, true);

    -- New data (the common case): a plain INSERT. Whether the batch is new is guessed from
    -- two primary-key range probes (its first and last series, over the batch's time range),
    -- not from every key: at fleet shape a batch holds 10,000 series, and a probe of each cost
    -- as much as the insert. A wrong guess (a key twice in the batch, a stored key, a
    -- concurrent writer of the same keys) ends in a unique violation, which rolls back just
    -- that attempt, and the general path runs.
    IF NOT EXISTS (SELECT FROM ts_measure m
                   WHERE m.series_id IN (v_sid[1], v_sid[cardinality(v_sid)])
                     AND m.ts BETWEEN v_lo AND v_hi) THEN
        BEGIN
            INSERT INTO ts_measure (series_id, ts, v_num, v_bool, v_text)
            SELECT k.sid, u.ts, u.n, u.b, u.t
            FROM unnest(p_device, p_point, p_ts, p_num, p_bool, p_text) AS u(d, p, ts, n, b, t)
            JOIN unnest(v_d, v_p, v_sid) AS k(d, p, sid) ON k.d = u.d AND k.p = u.p;
            GET DIAGNOSTICS accepted = ROW_COUNT;
            PERFORM set_config('traksense.batch_lo', '', true);
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- a key twice in the batch, a stored key, or a concurrent writer: below
        END;
    END IF;

    -- General path. The last occurrence of a key within the batch is inserted first (ord
    -- descending), so ON CONFLICT skips the earlier ones; rows go in primary key order.
    INSERT INTO ts_measure (series_id, ts, v_num, v_bool, v_text)
    SELECT k.sid, u.ts, u.n, u.b, u.t
    FROM unnest(p_device, p_point, p_ts, p_num, p_bool, p_text) WITH ORDINALITY
         AS u(d, p, ts, n, b, t, ord)
    JOIN unnest(v_d, v_p, v_sid) AS k(d, p, sid) ON k.d = u.d AND k.p = u.p
    ORDER BY k.sid, u.ts, u.ord DESC
    ON CONFLICT (series_id, ts) DO NOTHING;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;

    -- Only when some keys were already stored: overwrite those whose value differs with the
    -- batch's last value for the key.
    IF v_inserted < v_total THEN
        UPDATE ts_measure m
        SET v_num = b.n, v_bool = b.b, v_text = b.t
        FROM (SELECT DISTINCT ON (k.sid, u.ts) k.sid, u.ts, u.n, u.b, u.t
              FROM unnest(p_device, p_point, p_ts, p_num, p_bool, p_text) WITH ORDINALITY
                   AS u(d, p, ts, n, b, t, ord)
              JOIN unnest(v_d, v_p, v_sid) AS k(d, p, sid) ON k.d = u.d AND k.p = u.p
              ORDER BY k.sid, u.ts, u.ord DESC) b
        WHERE m.series_id = b.sid AND m.ts = b.ts AND m.ts BETWEEN v_lo AND v_hi
          AND (m.v_num, m.v_bool, m.v_text) IS DISTINCT FROM (b.n, b.b, b.t);
        GET DIAGNOSTICS overwritten = ROW_COUNT;
    END IF;

    PERFORM set_config('traksense.batch_lo', '', true);
    accepted := v_inserted + overwritten;
    duplicates := v_total - accepted;
END
$$;
COMMENT ON FUNCTION ts_ingest(text[], text[], timestamptz[], float8[], boolean[], text[]) IS
    'Write a batch of raw samples for the current tenant (its binding): atomic, idempotent, '
    'last write wins. Returns accepted, duplicates and overwritten counts.';

REVOKE ALL ON FUNCTION ts_ingest(text[], text[], timestamptz[], float8[], boolean[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ts_ingest(text[], text[], timestamptz[], float8[], boolean[], text[]) TO app_user;
REVOKE ALL ON FUNCTION ts_create_partitions(text, timestamptz[]) FROM PUBLIC;
