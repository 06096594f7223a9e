-- The continuous-aggregate refresh engine: recompute exactly the invalidated buckets of a tier
-- from its source tier (raw → 1m → 5m → 1h), one transaction per chunk. See docs/rollups.md.
--
--   ts_refresh_bounds(tier, start, end)  the effective window: complete buckets only, and never
--                                        past the source tier's own watermark
--   ts_refresh_chunks(tier, start, end)  the window cut into chunks of bounded pending work
--   ts_refresh_chunk(tier, start, end)   claim + recompute + write + watermark, atomically
--   CALL ts_refresh(tier, start, end)    the three together, from psql

-- The ts_tier row of a rollup tier ('1m', '5m', '1h'), or a clear error for anything else.
CREATE OR REPLACE FUNCTION ts_rollup_tier(p_tier text)
RETURNS ts_tier
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE;
BEGIN
    SELECT * INTO v_tier FROM ts_tier WHERE tier = p_tier AND bucket_width IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown rollup tier %', coalesce(quote_literal(p_tier), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_tier;
END
$$;
COMMENT ON FUNCTION ts_rollup_tier(text) IS
    'The ts_tier row of a rollup tier (1m, 5m, 1h); raises invalid_parameter_value otherwise.';

-- The effective refresh window of `p_tier` for a requested [p_start, p_end).
--
-- NULL start means "every pending invalidation below the end" (a backfill of weeks reaches the
-- tier without naming a window); NULL end means the policy end, now() minus one bucket. The end
-- is floored to the bucket width so only complete buckets are materialized, and for a tier built
-- from another tier it never passes that tier's watermark (its buckets above it are not final).
CREATE OR REPLACE FUNCTION ts_refresh_bounds(
    p_tier text, p_start timestamptz, p_end timestamptz,
    OUT window_start timestamptz, OUT window_end timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE;
    v_source ts_tier%ROWTYPE;
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
BEGIN
    v_tier := ts_rollup_tier(p_tier);
    SELECT * INTO STRICT v_source FROM ts_tier WHERE tier = v_tier.source_tier;

    window_end := coalesce(p_end, now() - v_tier.bucket_width);
    IF isfinite(window_end) THEN
        window_end := date_bin(v_tier.bucket_width, window_end, v_origin);
    END IF;
    IF v_source.bucket_width IS NOT NULL THEN
        window_end := least(window_end, CASE WHEN isfinite(v_source.watermark)
            THEN date_bin(v_tier.bucket_width, v_source.watermark, v_origin)
            ELSE v_source.watermark END);
    END IF;

    window_start := coalesce(p_start, '-infinity');
    IF isfinite(window_start) THEN
        -- A bucket that starts before the requested start but reaches into it is included.
        window_start := date_bin(v_tier.bucket_width, window_start, v_origin);
    END IF;
    IF window_start > window_end THEN
        window_start := window_end;
    END IF;
END
$$;
COMMENT ON FUNCTION ts_refresh_bounds(text, timestamptz, timestamptz) IS
    'Effective refresh window of a rollup tier: complete buckets only, capped at the source '
    'tier''s watermark; NULL start = all pending invalidations, NULL end = now() - one bucket.';

-- Cut [p_start, p_end) into chunks of about p_chunk_keys pending invalidations each, so that a
-- huge backfill is refreshed in bounded transactions (and with progress) while the usual small
-- refresh is a single chunk. Chunks are contiguous and cover the whole window; the last one ends
-- at p_end and is the one that moves the watermark to it.
CREATE OR REPLACE FUNCTION ts_refresh_chunks(
    p_tier text, p_start timestamptz, p_end timestamptz, p_chunk_keys integer DEFAULT 50000)
RETURNS TABLE (chunk_start timestamptz, chunk_end timestamptz)
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    WITH pending AS (
        SELECT i.bucket, row_number() OVER (ORDER BY i.bucket) AS rn
        FROM ts_invalidation i
        WHERE i.tier = p_tier AND i.bucket >= p_start AND i.bucket < p_end
    ),
    -- Every p_chunk_keys-th pending bucket starts a new chunk (a bucket never spans two).
    cuts AS (
        SELECT DISTINCT p.bucket AS cut FROM pending p
        WHERE p.rn > 1 AND (p.rn - 1) % greatest(p_chunk_keys, 1) = 0
    ),
    bounds AS (
        SELECT p_start AS lo UNION SELECT cut FROM cuts
    )
    SELECT b.lo, coalesce(lead(b.lo) OVER (ORDER BY b.lo), p_end)
    FROM bounds b
    ORDER BY b.lo
$$;
COMMENT ON FUNCTION ts_refresh_chunks(text, timestamptz, timestamptz, integer) IS
    'Contiguous chunks covering a refresh window, each holding about p_chunk_keys pending '
    'invalidations (one chunk when there are fewer).';

-- Refresh one chunk of a tier, atomically. In this one transaction:
--   1. serialise with any other refresh of the tier (transaction advisory lock: a second refresh
--      waits, then finds the claims gone);
--   2. claim the tier's pending invalidations in [p_start, p_end) with DELETE ... RETURNING (rows
--      committed later stay for the next run; on rollback the claimed rows come back);
--   3. recompute exactly those buckets from the source tier: per-key index lookups for a few
--      keys, one range scan + hash aggregate for many (the choice is logged in `strategy`);
--   4. upsert changed buckets, delete buckets whose source is now empty, and append every
--      changed bucket to the next tier's invalidations;
--   5. advance the tier's watermark to p_end.
-- Expiry protection: a bucket starting before the source tier's expired_before has lost (part
-- of) its source to retention, so it is only ever created when absent, never overwritten or
-- deleted. Rollup data is never lost because its source expired.
CREATE OR REPLACE FUNCTION ts_refresh_chunk(
    p_tier text, p_start timestamptz, p_end timestamptz,
    OUT invalidations bigint, OUT buckets bigint, OUT rows_written bigint,
    OUT rows_deleted bigint, OUT strategy text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
    v_tier ts_tier%ROWTYPE;
    v_source ts_tier%ROWTYPE;
    v_next ts_tier%ROWTYPE;
    v_series bigint[];
    v_lo timestamptz;
    v_hi timestamptz;
    v_density float8;
    v_agg text;
    v_time text;  -- the source's time column: ts for raw samples, bucket for a tier
    v_partitions timestamptz[];
BEGIN
    v_tier := ts_rollup_tier(p_tier);
    PERFORM pg_advisory_xact_lock(hashtext('traksense.refresh.' || p_tier));
    -- A refresh is recomputable from durable state: if a crash loses its (unflushed) commit,
    -- the claimed invalidations and the old rollups come back together and the next run redoes
    -- it; WAL order keeps every later synchronous commit behind it. So it need not wait for the
    -- WAL flush, which is most of the cost of a small refresh.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- Read after the lock: retention may just have moved the source's expired_before.
    SELECT * INTO STRICT v_source FROM ts_tier WHERE tier = v_tier.source_tier;
    SELECT * INTO v_next FROM ts_tier WHERE source_tier = p_tier;

    CREATE TEMP TABLE IF NOT EXISTS ts_refresh_keys (series_id bigint, bucket timestamptz)
        ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS ts_refresh_rows (
        series_id bigint, bucket timestamptz,
        v_sum float8, v_min float8, v_max float8, n integer
    ) ON COMMIT DELETE ROWS;
    -- Two chunks in one transaction (a caller's outer transaction) start empty too.
    DELETE FROM ts_refresh_keys;
    DELETE FROM ts_refresh_rows;

    -- 1. Claim. Duplicates (one per writing statement) collapse to one key.
    WITH claimed AS (
        DELETE FROM ts_invalidation i
        WHERE i.tier = p_tier AND i.bucket >= p_start AND i.bucket < p_end
        RETURNING i.series_id, i.bucket
    ), keys AS (
        INSERT INTO ts_refresh_keys (series_id, bucket)
        SELECT DISTINCT c.series_id, c.bucket FROM claimed c
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM claimed), (SELECT count(*) FROM keys)
    INTO invalidations, buckets;

    rows_written := 0;
    rows_deleted := 0;
    strategy := 'none';
    IF buckets > 0 THEN
        -- Compressed ranges (55_compression.sql): restore the segments about to be written,
        -- and those of the source rows about to be read; the next compression job compresses
        -- them again. Target first, then the finer source tier (the lock order of compression).
        PERFORM ts_decompress_for(p_tier, array_agg(k.series_id), array_agg(k.bucket))
        FROM ts_refresh_keys k;
        IF v_source.bucket_width IS NOT NULL THEN
            PERFORM ts_decompress_for(v_source.tier, array_agg(k.series_id), array_agg(k.bucket),
                                      v_tier.bucket_width)
            FROM ts_refresh_keys k;
        END IF;

        -- 2. Recompute. How dense are the claimed keys in the time range they span? The range
        -- also goes into every statement as literals, so that planning prunes the partitions of
        -- the source and the tier to those it touches (the cost must not grow with history).
        SELECT array_agg(DISTINCT k.series_id), min(k.bucket), max(k.bucket) + v_tier.bucket_width
        INTO v_series, v_lo, v_hi
        FROM ts_refresh_keys k;
        v_density := buckets::float8 / (cardinality(v_series)
                     * greatest(extract(epoch FROM v_hi - v_lo)
                                / extract(epoch FROM v_tier.bucket_width), 1));
        -- Aggregates of the source: raw samples, or the finer tier's partial aggregates.
        v_time := CASE WHEN v_source.bucket_width IS NULL THEN 'ts' ELSE 'bucket' END;
        v_agg := CASE WHEN v_source.bucket_width IS NULL
            THEN 'sum(m.v_num) AS v_sum, min(m.v_num) AS v_min, max(m.v_num) AS v_max,
                  count(*)::integer AS n'
            ELSE 'sum(m.v_sum) AS v_sum, min(m.v_min) AS v_min, max(m.v_max) AS v_max,
                  sum(m.n)::integer AS n' END;

        IF buckets > 256 AND v_density >= 0.2 THEN
            -- Many keys filling their range: scan the source range once, aggregate by hash,
            -- keep the claimed buckets. Cost grows with the range, not with the key count.
            strategy := 'range';
            ANALYZE ts_refresh_keys;
            EXECUTE format(
                'INSERT INTO ts_refresh_rows (series_id, bucket, v_sum, v_min, v_max, n)
                 SELECT a.* FROM (
                     SELECT m.series_id, date_bin(%L::interval, m.%I, %L::timestamptz) AS bucket, %s
                     FROM %I m
                     WHERE m.%I >= %L AND m.%I < %L AND m.series_id = ANY ($1) %s
                     GROUP BY 1, 2
                 ) a
                 JOIN ts_refresh_keys k ON k.series_id = a.series_id AND k.bucket = a.bucket',
                v_tier.bucket_width, v_time, v_origin, v_agg,
                v_source.relation, v_time, v_lo, v_time, v_hi,
                CASE WHEN v_source.bucket_width IS NULL THEN 'AND m.v_num IS NOT NULL' ELSE '' END)
            USING v_series;
        ELSE
            -- A few keys (the steady state, late samples): one primary-key range lookup each.
            strategy := 'lookup';
            EXECUTE format(
                'INSERT INTO ts_refresh_rows (series_id, bucket, v_sum, v_min, v_max, n)
                 SELECT k.series_id, k.bucket, a.*
                 FROM ts_refresh_keys k
                 CROSS JOIN LATERAL (
                     SELECT %s FROM %I m
                     WHERE m.series_id = k.series_id
                       AND m.%I >= k.bucket AND m.%I < k.bucket + %L::interval
                       AND m.%I >= %L AND m.%I < %L %s
                 ) a
                 WHERE a.n > 0',
                v_agg, v_source.relation, v_time,
                v_time, v_tier.bucket_width, v_time, v_lo, v_time, v_hi,
                CASE WHEN v_source.bucket_width IS NULL THEN 'AND m.v_num IS NOT NULL' ELSE '' END);
        END IF;

        -- Partitions of the tier for every bucket about to be written.
        SELECT array_agg(d.lo) INTO v_partitions
        FROM (SELECT DISTINCT date_bin(v_tier.partition_width, r.bucket, v_origin) AS lo
              FROM ts_refresh_rows r) d
        WHERE NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = p_tier AND p.lo = d.lo);
        IF v_partitions IS NOT NULL THEN
            PERFORM ts_create_partitions(p_tier, v_partitions);
        END IF;

        -- 3. Write. Buckets at or after the source's expiry are made equal to the recomputed
        -- source (unchanged rows are not rewritten); older ones are only created when absent.
        EXECUTE format(
            'WITH upserted AS (
                 INSERT INTO %1$I AS t (series_id, bucket, v_sum, v_min, v_max, n)
                 SELECT r.series_id, r.bucket, r.v_sum, r.v_min, r.v_max, r.n
                 FROM ts_refresh_rows r WHERE r.bucket >= $1
                 ON CONFLICT (series_id, bucket) DO UPDATE
                 SET v_sum = excluded.v_sum, v_min = excluded.v_min,
                     v_max = excluded.v_max, n = excluded.n
                 WHERE (t.v_sum, t.v_min, t.v_max, t.n)
                       IS DISTINCT FROM (excluded.v_sum, excluded.v_min, excluded.v_max, excluded.n)
                 RETURNING t.series_id, t.bucket
             ), backfilled AS (
                 INSERT INTO %1$I (series_id, bucket, v_sum, v_min, v_max, n)
                 SELECT r.series_id, r.bucket, r.v_sum, r.v_min, r.v_max, r.n
                 FROM ts_refresh_rows r WHERE r.bucket < $1
                 ON CONFLICT (series_id, bucket) DO NOTHING
                 RETURNING series_id, bucket
             ), emptied AS (
                 DELETE FROM %1$I t
                 USING ts_refresh_keys k
                 WHERE t.series_id = k.series_id AND t.bucket = k.bucket AND k.bucket >= $1
                   AND t.bucket >= %2$L AND t.bucket < %3$L
                   AND NOT EXISTS (SELECT FROM ts_refresh_rows r
                                   WHERE r.series_id = k.series_id AND r.bucket = k.bucket)
                 RETURNING t.series_id, t.bucket
             ), changed AS (
                 SELECT * FROM upserted UNION ALL SELECT * FROM backfilled
                 UNION ALL SELECT * FROM emptied
             ), next_tier AS (
                 INSERT INTO ts_invalidation (tier, series_id, bucket)
                 SELECT DISTINCT $2::text, c.series_id, date_bin($3::interval, c.bucket, $4::timestamptz)
                 FROM changed c WHERE $2 IS NOT NULL
             )
             SELECT (SELECT count(*) FROM upserted) + (SELECT count(*) FROM backfilled),
                    (SELECT count(*) FROM emptied)',
            v_tier.relation, v_lo, v_hi)
        INTO rows_written, rows_deleted
        USING v_source.expired_before, v_next.tier, v_next.bucket_width, v_origin;
    END IF;

    -- 4. The watermark moves with the data, in the same transaction.
    UPDATE ts_tier SET watermark = p_end WHERE tier = p_tier AND watermark < p_end;
END
$$;
COMMENT ON FUNCTION ts_refresh_chunk(text, timestamptz, timestamptz) IS
    'Refresh one chunk of a rollup tier atomically: claim its invalidations in [start, end), '
    'recompute those buckets from the source tier, write them, invalidate the next tier, move '
    'the watermark. Never overwrites or deletes a bucket older than the source''s expiry.';

-- Manual refresh from psql, the equivalent of TimescaleDB's refresh_continuous_aggregate():
--   CALL ts_refresh('1m', now() - interval '14 days', now());
--   CALL ts_refresh('1h');   -- every pending invalidation up to the policy end
-- Each chunk commits on its own, so a refresh of a long backfill must run outside an explicit
-- transaction block (like TimescaleDB's); a single-chunk refresh may run inside one.
CREATE OR REPLACE PROCEDURE ts_refresh(
    p_tier text, p_window_start timestamptz DEFAULT NULL, p_window_end timestamptz DEFAULT NULL)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_bounds record;
    v_chunk record;
    v_stats record;
    v_first boolean := true;
    v_buckets bigint := 0;
    v_written bigint := 0;
    v_deleted bigint := 0;
    v_started timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO v_bounds FROM ts_refresh_bounds(p_tier, p_window_start, p_window_end);
    FOR v_chunk IN
        SELECT * FROM ts_refresh_chunks(p_tier, v_bounds.window_start, v_bounds.window_end)
    LOOP
        IF NOT v_first THEN
            COMMIT;
        END IF;
        v_first := false;
        SELECT * INTO v_stats FROM ts_refresh_chunk(p_tier, v_chunk.chunk_start, v_chunk.chunk_end);
        v_buckets := v_buckets + v_stats.buckets;
        v_written := v_written + v_stats.rows_written;
        v_deleted := v_deleted + v_stats.rows_deleted;
    END LOOP;
    RAISE NOTICE 'refreshed % up to %: % buckets recomputed, % rows written, % deleted, % s',
        p_tier, v_bounds.window_end, v_buckets, v_written, v_deleted,
        round(extract(epoch FROM clock_timestamp() - v_started)::numeric, 3);
END
$$;
COMMENT ON PROCEDURE ts_refresh(text, timestamptz, timestamptz) IS
    'Refresh a rollup tier (1m, 5m, 1h) over a window, like refresh_continuous_aggregate(): '
    'NULL start = every pending invalidation, NULL end = now() minus one bucket.';

REVOKE ALL ON FUNCTION ts_rollup_tier(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_bounds(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_chunks(text, timestamptz, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_chunk(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON PROCEDURE ts_refresh(text, timestamptz, timestamptz) FROM PUBLIC;
