-- One chunk of a refresh of a rollup tier, atomically. See docs/rollups.md.

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
--
-- Claimed keys and recomputed rows travel between the statements as arrays in variables, not
-- temporary tables: a refresh of one new minute costs a handful of statements and no catalog
-- or truncation work (creating, emptying and truncating two temporary tables at commit was
-- most of its cost).
--
-- Parallel runs (traksense/rollups/refresh.py): p_run is the pid of a coordinating backend that
-- holds the tier's refresh lock for the whole run (ts_refresh_lock), and p_seq the chunk's place
-- in the run (1, 2, ...), whose in-flight lock the caller took first (ts_refresh_chunk_begin).
-- Chunks of one run claim disjoint [start, end) ranges, so they recompute disjoint buckets and
-- may run at the same time; the lock still keeps every other refresh of the tier out. The
-- watermark describes the data below it, so chunk k only moves it once chunk k-1 has ended
-- (it waits for k-1's in-flight lock) and only if k-1 committed (the watermark then reached
-- p_start): the watermark is still written in the transaction of the data it covers, never
-- past a chunk that did not commit. A crash rolls back every uncommitted chunk, claims
-- included; chunks already committed are complete.
DROP FUNCTION IF EXISTS ts_refresh_chunk(text, timestamptz, timestamptz);  -- before run/seq
CREATE OR REPLACE FUNCTION ts_refresh_chunk(
    p_tier text, p_start timestamptz, p_end timestamptz,
    p_run integer DEFAULT NULL, p_seq integer DEFAULT NULL,
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
    -- The claimed keys, and the recomputed rows of those with source data.
    v_key_series bigint[];
    v_key_bucket timestamptz[];
    v_series bigint[];
    v_bucket timestamptz[];
    v_sum float8[];
    v_min float8[];
    v_max float8[];
    v_n integer[];
    v_lo timestamptz;
    v_hi timestamptz;
    v_series_count bigint;
    v_series_lo bigint;
    v_series_hi bigint;
    v_cells float8;
    v_consecutive boolean;
    v_distinct bigint[];   -- the keys' series (range strategy)
    v_compressed boolean;  -- a compressed range of the tier or its source is involved
    v_fresh boolean := false;  -- nothing stored yet for the keys' series in their range
    v_agg text;
    v_time text;  -- the source's time column: ts for raw samples, bucket for a tier
    v_numeric text;
    v_filter text;
    v_partitions timestamptz[];
    -- The region: the buckets from the watermark on, whose source writes were not logged (they
    -- were at or above the invalidation threshold, 51_invalidation.sql). Materialized by one
    -- range scan of the source over every series: [v_region_lo, v_region_hi), bucket-aligned.
    v_watermark timestamptz;
    v_dirty_until timestamptz;
    v_region_lo timestamptz;
    v_region_hi timestamptz;
    v_region boolean := false;
    v_region_fast boolean := false;  -- no tier row there yet, nothing compressed: plain INSERT
    v_scan_lo timestamptz;
    v_next_threshold timestamptz := 'infinity';
    v_src_series bigint[];
    v_src_bucket timestamptz[];
    v_insert text;
    v_region_rows bigint;
    v_claim_series bigint[];  -- the claimed keys, for the state rollups (54_state_refresh.sql)
    v_claim_bucket timestamptz[];
BEGIN
    v_tier := ts_rollup_tier(p_tier);
    IF p_run IS NULL THEN
        PERFORM pg_advisory_xact_lock(ts_refresh_lock_key(p_tier));
        PERFORM pg_advisory_xact_lock(ts_refresh_work_key(p_tier));
    ELSE
        -- The work lock first, then the check: a chunk that passes it keeps every other writer
        -- of the tier out until it ends, even if its coordinator is gone by then.
        PERFORM pg_advisory_xact_lock_shared(ts_refresh_work_key(p_tier));
        IF NOT EXISTS (
            SELECT FROM pg_locks l
            WHERE l.locktype = 'advisory' AND l.pid = p_run AND l.granted
              AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND ((l.classid::bigint << 32) | l.objid::bigint) = ts_refresh_lock_key(p_tier))
        THEN
            RAISE EXCEPTION 'backend % does not hold the refresh lock of tier %', p_run, p_tier
                USING ERRCODE = 'lock_not_available';
        END IF;
        PERFORM ts_refresh_chunk_begin(p_tier, p_run, p_seq);  -- held already: re-entrant
    END IF;
    -- A refresh is recomputable from durable state: if a crash loses its (unflushed) commit,
    -- the claimed invalidations and the old rollups come back together and the next run redoes
    -- it; WAL order keeps every later synchronous commit behind it. So it need not wait for the
    -- WAL flush, which is most of the cost of a small refresh.
    PERFORM set_config('synchronous_commit', 'off', true);
    -- A region chunk sorts up to about 4 x 50,000 cells (more at a million series, one bucket
    -- a chunk): in memory, not in temporary files. Transaction-local like the rest.
    PERFORM set_config('work_mem', '128MB', true);
    -- JIT compilation of a region statement costs more than it saves (measured: 400 ms to
    -- compile a 5m aggregation of 500,000 rows that runs in 270 ms).
    PERFORM set_config('jit', 'off', true);
    -- No parallel workers inside a chunk: a big refresh runs its chunks on two connections
    -- already (refresh.py), and the steady-state job of a million-series fleet (a million rows
    -- a minute) would otherwise take both cores for seconds and starve the API's reads.
    PERFORM set_config('max_parallel_workers_per_gather', '0', true);
    -- Read after the lock: retention may just have moved the source's expired_before.
    SELECT * INTO STRICT v_source FROM ts_tier WHERE tier = v_tier.source_tier;
    SELECT * INTO v_next FROM ts_tier WHERE source_tier = p_tier;
    SELECT t.watermark, t.dirty_until INTO v_watermark, v_dirty_until
    FROM ts_tier t WHERE t.tier = p_tier;

    v_time := CASE WHEN v_source.bucket_width IS NULL THEN 'ts' ELSE 'bucket' END;
    v_agg := CASE WHEN v_source.bucket_width IS NULL
        THEN 'sum(m.v_num) AS v_sum, min(m.v_num) AS v_min, max(m.v_num) AS v_max,
              count(*)::integer AS n'
        ELSE 'sum(m.v_sum) AS v_sum, min(m.v_min) AS v_min, max(m.v_max) AS v_max,
              sum(m.n)::integer AS n' END;
    v_numeric := CASE WHEN v_source.bucket_width IS NULL THEN 'AND m.v_num IS NOT NULL'
                      ELSE '' END;

    -- 0. The region. A sequential chunk covers it from the watermark on, whatever its start
    -- (the watermark never jumps over unmaterialized time); a chunk of a parallel run covers
    -- its own part of it (the chunks before it cover the rest).
    v_region_lo := CASE WHEN p_seq IS NULL THEN v_watermark ELSE greatest(p_start, v_watermark) END;
    IF p_end > v_region_lo THEN
        -- The bucket holding a mid-bucket watermark was materialized, and later writes into it
        -- are logged (buckets below the threshold are): the region starts after it.
        v_region_lo := ts_bucket_ceil(v_tier.bucket_width, v_region_lo);
        v_region_hi := ts_bucket_ceil(v_tier.bucket_width, p_end);
        IF NOT isfinite(v_region_lo) THEN  -- a first materialization: from the oldest source data
            SELECT min(p.lo) INTO v_scan_lo FROM ts_partition p WHERE p.tier = v_source.tier;
            v_region_lo := coalesce(date_bin(v_tier.bucket_width, v_scan_lo, v_origin),
                                    v_region_hi);
        END IF;
        -- The threshold must cover what this chunk materializes before the source is read.
        -- refresh() and ts_refresh move it in a transaction of their own; a caller's
        -- transaction moves it here, and then writers of the source wait for this one to end.
        IF (SELECT t.threshold FROM ts_invalidation_threshold t WHERE t.tier = p_tier) < p_end
        THEN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                RAISE EXCEPTION 'ts_refresh_chunk must run in READ COMMITTED to move the '
                                'invalidation threshold of tier %', p_tier
                    USING ERRCODE = 'invalid_transaction_state';
            END IF;
            PERFORM ts_invalidation_threshold_move(p_tier, p_end);
        END IF;
        v_region := v_region_lo < v_region_hi;
    END IF;
    IF v_next.tier IS NOT NULL THEN
        -- Held until commit: the next tier cannot move its threshold past what this chunk
        -- writes without seeing it (51_invalidation.sql).
        v_next_threshold := ts_invalidation_threshold_share(v_next.tier);
    END IF;

    -- 1. Claim. Duplicates (one per writing statement) collapse to one key.
    WITH claimed AS (
        DELETE FROM ts_invalidation i
        WHERE i.tier = p_tier AND i.bucket >= p_start AND i.bucket < p_end
        RETURNING i.series_id, i.bucket
    )
    SELECT (SELECT count(*) FROM claimed), array_agg(k.series_id), array_agg(k.bucket)
    INTO invalidations, v_key_series, v_key_bucket
    FROM (SELECT DISTINCT c.series_id, c.bucket FROM claimed c) k;
    v_claim_series := v_key_series;
    v_claim_bucket := v_key_bucket;

    IF v_region THEN
        -- Fast: no tier row can be in the region (dirty_until, 0005_invalidation_threshold.sql)
        -- and nothing there is compressed. Then the region is one INSERT ... SELECT below, and
        -- its claimed keys are covered by it. Otherwise every key of the region (claimed, or
        -- with source data) goes through the general path like a logged one.
        v_region_fast := v_dirty_until <= v_region_lo AND NOT EXISTS (
            SELECT FROM ts_partition p
            WHERE p.tier IN (p_tier, v_source.tier) AND p.compressed_at IS NOT NULL
              AND p.hi > v_region_lo AND p.lo < v_region_hi);
        IF v_region_fast THEN
            SELECT array_agg(k.s), array_agg(k.b) INTO v_key_series, v_key_bucket
            FROM unnest(v_key_series, v_key_bucket) AS k(s, b) WHERE k.b < v_region_lo;
        ELSE
            EXECUTE format(
                'SELECT array_agg(a.s), array_agg(a.b) FROM (
                     SELECT DISTINCT m.series_id AS s,
                            date_bin(%L::interval, m.%I, %L::timestamptz) AS b
                     FROM %I m WHERE m.%I >= %L AND m.%I < %L %s) a',
                v_tier.bucket_width, v_time, v_origin, v_source.relation,
                v_time, v_region_lo, v_time, v_region_hi, v_numeric)
            INTO v_src_series, v_src_bucket;
            SELECT array_agg(u.s), array_agg(u.b) INTO v_key_series, v_key_bucket
            FROM (SELECT k.s, k.b FROM unnest(v_key_series, v_key_bucket) AS k(s, b)
                  UNION
                  SELECT k.s, k.b FROM unnest(v_src_series, v_src_bucket) AS k(s, b)) u;
        END IF;
    END IF;
    buckets := coalesce(cardinality(v_key_series), 0);

    rows_written := 0;
    rows_deleted := 0;
    strategy := 'none';
    IF buckets > 0 THEN
        -- The time range the keys span and their series. The range also goes into every
        -- statement as literals, so that planning prunes the partitions of the source and the
        -- tier to those it touches (the cost must not grow with history).
        SELECT min(k.b), max(k.b) + v_tier.bucket_width,
               count(DISTINCT k.s), min(k.s), max(k.s)
        INTO v_lo, v_hi, v_series_count, v_series_lo, v_series_hi
        FROM unnest(v_key_series, v_key_bucket) AS k(s, b);

        -- Compressed ranges (56_decompress.sql): restore the segments about to be written,
        -- and those of the source rows about to be read; the next compression job compresses
        -- them again. Target first, then the finer source tier (the lock order of compression).
        -- One look at the registry first: the usual refresh is far from any compressed range.
        v_compressed := EXISTS (
            SELECT FROM ts_partition p
            WHERE p.tier IN (p_tier, v_source.tier) AND p.compressed_at IS NOT NULL
              AND p.hi > v_lo AND p.lo <= v_hi);
        IF v_compressed THEN
            PERFORM ts_decompress_for(p_tier, v_key_series, v_key_bucket);
            -- (raw too, with the optional raw compression)
            PERFORM ts_decompress_for(v_source.tier, v_key_series, v_key_bucket,
                                      v_tier.bucket_width);
        END IF;

        -- 2. Recompute, into arrays. Aggregates of the source (v_agg): raw samples, or the
        -- finer tier's partial aggregates.
        -- How many (series, bucket) cells the keys' range holds: the keys fill it when equal.
        v_cells := v_series_count * (extract(epoch FROM v_hi - v_lo)
                                     / extract(epoch FROM v_tier.bucket_width));

        IF buckets > 256 AND buckets >= 0.2 * v_cells THEN
            -- Many keys filling their range: scan the source range once, aggregate by hash,
            -- keep the claimed buckets. Cost grows with the range, not with the key count.
            strategy := 'range';
            -- Consecutive series ids (a whole tenant, a first materialization) are one range
            -- test per row instead of an array lookup.
            v_consecutive := v_series_hi - v_series_lo + 1 = v_series_count;
            v_distinct := CASE WHEN v_consecutive
                THEN ARRAY(SELECT generate_series(v_series_lo, v_series_hi))
                ELSE (SELECT array_agg(DISTINCT s) FROM unnest(v_key_series) s) END;
            v_filter := CASE WHEN v_consecutive
                THEN format('m.series_id BETWEEN %s AND %s', v_series_lo, v_series_hi)
                ELSE 'm.series_id = ANY ($1)' END;
            EXECUTE format(
                'SELECT array_agg(a.series_id), array_agg(a.bucket), array_agg(a.v_sum),
                        array_agg(a.v_min), array_agg(a.v_max), array_agg(a.n)
                 FROM (
                     SELECT m.series_id, date_bin(%L::interval, m.%I, %L::timestamptz) AS bucket, %s
                     FROM %I m
                     WHERE m.%I >= %L AND m.%I < %L AND %s %s
                     GROUP BY 1, 2
                 ) a %s',
                v_tier.bucket_width, v_time, v_origin, v_agg,
                v_source.relation, v_time, v_lo, v_time, v_hi, v_filter, v_numeric,
                -- When the keys are every cell of the range, every group of the scan is a
                -- claimed key (same series, buckets inside the range): no join needed.
                CASE WHEN buckets < v_cells
                     THEN 'JOIN unnest($2, $3) AS k(s, b) ON k.s = a.series_id AND k.b = a.bucket'
                     ELSE '' END)
            INTO v_series, v_bucket, v_sum, v_min, v_max, v_n
            USING v_distinct, v_key_series, v_key_bucket;
            -- Nothing stored yet for these series in the range (a first materialization, a
            -- backfill into new time)? Then the write below is a plain INSERT, without conflict
            -- checks or deletions. Exact: under the refresh lock nobody else writes these
            -- buckets (other refreshes wait, compression takes the lock, and with no compressed
            -- segment involved nothing is restored into the range); a row there anyway would
            -- make the INSERT fail, never be overwritten. One primary-key probe per series.
            EXECUTE format(
                'SELECT NOT EXISTS (SELECT FROM unnest($1) AS s(id) WHERE EXISTS (
                     SELECT FROM %I t WHERE t.series_id = s.id AND t.bucket >= %L AND t.bucket < %L))',
                v_tier.relation, v_lo, v_hi)
            INTO v_fresh
            USING v_distinct;
            v_fresh := v_fresh AND NOT v_compressed;
        ELSE
            -- A few keys (the steady state, late samples): one primary-key range lookup each.
            strategy := 'lookup';
            EXECUTE format(
                'SELECT array_agg(k.s), array_agg(k.b), array_agg(a.v_sum), array_agg(a.v_min),
                        array_agg(a.v_max), array_agg(a.n)
                 FROM unnest($1, $2) AS k(s, b)
                 CROSS JOIN LATERAL (
                     SELECT %s FROM %I m
                     WHERE m.series_id = k.s
                       AND m.%I >= k.b AND m.%I < k.b + %L::interval
                       AND m.%I >= %L AND m.%I < %L %s
                 ) a
                 WHERE a.n > 0',
                v_agg, v_source.relation, v_time,
                v_time, v_tier.bucket_width, v_time, v_lo, v_time, v_hi, v_numeric)
            INTO v_series, v_bucket, v_sum, v_min, v_max, v_n
            USING v_key_series, v_key_bucket;
        END IF;

        -- Partitions of the tier for every bucket about to be written.
        SELECT array_agg(d.lo) INTO v_partitions
        FROM (SELECT DISTINCT date_bin(v_tier.partition_width, b, v_origin) AS lo
              FROM unnest(v_bucket) b) d
        WHERE NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = p_tier AND p.lo = d.lo);
        IF v_partitions IS NOT NULL THEN
            PERFORM ts_create_partitions(p_tier, v_partitions);
        END IF;

        -- 3. Write. Buckets at or after the source's expiry are made equal to the recomputed
        -- source (unchanged rows are not rewritten); older ones are only created when absent.
        -- Into a fresh range (v_fresh), every row is simply inserted: upserted takes them all,
        -- without ON CONFLICT (%4$s, %5$s), and backfilled and emptied are empty (%6$s).
        EXECUTE format(
            'WITH r AS (
                 SELECT * FROM unnest($5, $6, $7, $8, $9, $10)
                     AS r(series_id, bucket, v_sum, v_min, v_max, n)
             ), upserted AS (
                 INSERT INTO %1$I AS t (series_id, bucket, v_sum, v_min, v_max, n)
                 SELECT r.series_id, r.bucket, r.v_sum, r.v_min, r.v_max, r.n
                 FROM r WHERE %4$s
                 %5$s
                 RETURNING t.series_id, t.bucket
             ), backfilled AS (
                 INSERT INTO %1$I (series_id, bucket, v_sum, v_min, v_max, n)
                 SELECT r.series_id, r.bucket, r.v_sum, r.v_min, r.v_max, r.n
                 FROM r WHERE r.bucket < $1 AND %6$s
                 ON CONFLICT (series_id, bucket) DO NOTHING
                 RETURNING series_id, bucket
             ), emptied AS (
                 DELETE FROM %1$I t
                 USING unnest($11, $12) AS k(series_id, bucket)
                 WHERE t.series_id = k.series_id AND t.bucket = k.bucket AND k.bucket >= $1
                   AND t.bucket >= %2$L AND t.bucket < %3$L AND %6$s
                   AND NOT EXISTS (SELECT FROM r
                                   WHERE r.series_id = k.series_id AND r.bucket = k.bucket)
                 RETURNING t.series_id, t.bucket
             ), changed AS (
                 SELECT * FROM upserted UNION ALL SELECT * FROM backfilled
                 UNION ALL SELECT * FROM emptied
             ), next_tier AS (
                 INSERT INTO ts_invalidation (tier, series_id, bucket)
                 SELECT DISTINCT $2::text, c.series_id, date_bin($3::interval, c.bucket, $4::timestamptz)
                 FROM changed c
                 WHERE $2 IS NOT NULL AND date_bin($3::interval, c.bucket, $4::timestamptz) < $13
             )
             SELECT (SELECT count(*) FROM upserted) + (SELECT count(*) FROM backfilled),
                    (SELECT count(*) FROM emptied)',
            v_tier.relation, v_lo, v_hi,
            CASE WHEN v_fresh THEN 'true' ELSE 'r.bucket >= $1' END,
            CASE WHEN v_fresh THEN '' ELSE
                'ON CONFLICT (series_id, bucket) DO UPDATE
                 SET v_sum = excluded.v_sum, v_min = excluded.v_min,
                     v_max = excluded.v_max, n = excluded.n
                 WHERE (t.v_sum, t.v_min, t.v_max, t.n)
                       IS DISTINCT FROM (excluded.v_sum, excluded.v_min, excluded.v_max, excluded.n)'
            END,
            CASE WHEN v_fresh THEN 'false' ELSE 'true' END)
        INTO rows_written, rows_deleted
        USING v_source.expired_before, v_next.tier, v_next.bucket_width, v_origin,
              coalesce(v_series, '{}'), coalesce(v_bucket, '{}'), coalesce(v_sum, '{}'),
              coalesce(v_min, '{}'), coalesce(v_max, '{}'), coalesce(v_n, '{}'),
              v_key_series, v_key_bucket, v_next_threshold;
    END IF;

    -- 3b. The region, fast: one range scan of the source, aggregated and inserted in time order
    -- (the floor a plain GROUP BY sets; time order keeps the tier's BRIN index tight for the
    -- next tier's range scans, and each bucket's rows go into the primary key in key order),
    -- and the next tier told only of buckets below its threshold (in the steady state none:
    -- its threshold trails this tier's watermark).
    IF v_region_fast THEN
        strategy := CASE WHEN buckets > 0 THEN strategy || '+region' ELSE 'region' END;
        PERFORM ts_ensure_partitions_for(p_tier, v_source.tier, v_region_lo, v_region_hi);
        v_insert := format(
            'INSERT INTO %I (series_id, bucket, v_sum, v_min, v_max, n)
             SELECT m.series_id, date_bin(%L::interval, m.%I, %L::timestamptz), %s
             FROM %I m
             WHERE m.%I >= %L AND m.%I < %L %s
             GROUP BY 2, 1
             ORDER BY 2, 1',
            v_tier.relation, v_tier.bucket_width, v_time, v_origin, v_agg, v_source.relation,
            v_time, v_region_lo, v_time, v_region_hi, v_numeric);
        -- Through the time (BRIN) index, always: the planner, with statistics that have not
        -- seen the newest rows yet, may prefer a sequential scan of a whole partition (seven
        -- days of a fleet's 1m rows to read five minutes).
        PERFORM set_config('enable_seqscan', 'off', true);
        IF v_next_threshold > v_region_lo THEN
            EXECUTE format(
                'WITH inserted AS (%s RETURNING series_id, bucket), logged AS (
                     INSERT INTO ts_invalidation (tier, series_id, bucket)
                     SELECT DISTINCT %L, i.series_id, date_bin(%L::interval, i.bucket, %L)
                     FROM inserted i WHERE date_bin(%L::interval, i.bucket, %L) < %L)
                 SELECT count(*) FROM inserted',
                v_insert, v_next.tier, v_next.bucket_width, v_origin,
                v_next.bucket_width, v_origin, v_next_threshold)
            INTO v_region_rows;
        ELSE
            EXECUTE v_insert;
            GET DIAGNOSTICS v_region_rows = ROW_COUNT;
        END IF;
        PERFORM set_config('enable_seqscan', 'on', true);
        buckets := buckets + v_region_rows;
        rows_written := rows_written + v_region_rows;
    END IF;

    -- 3c. The state rollups of boolean and text series: the same keys and region.
    PERFORM ts_state_refresh(p_tier, v_claim_series, v_claim_bucket,
                             CASE WHEN v_region THEN v_region_lo END,
                             CASE WHEN v_region THEN v_region_hi END, v_next_threshold);

    -- 4. The watermark moves with the data, in the same transaction. In a parallel run, only
    -- once the previous chunk has ended, and only if it committed (see above).
    IF p_seq IS NULL OR p_seq <= 1 THEN
        UPDATE ts_tier SET watermark = p_end WHERE tier = p_tier AND watermark < p_end;
    ELSE
        PERFORM pg_advisory_xact_lock_shared(ts_refresh_run_key(p_tier, p_run), p_seq - 1);
        UPDATE ts_tier SET watermark = p_end
        WHERE tier = p_tier AND watermark >= p_start AND watermark < p_end;
        IF NOT FOUND AND v_region THEN
            -- The chunk before did not commit: this chunk's rows now lie above the watermark,
            -- and the next refresh of the region must not take the plain INSERT there.
            UPDATE ts_tier SET dirty_until = greatest(dirty_until, v_region_hi)
            WHERE tier = p_tier AND watermark < p_end;
        END IF;
    END IF;
    -- A region refreshed by the general path is exact: no stray row below its end any more.
    IF v_region AND NOT v_region_fast THEN
        UPDATE ts_tier SET dirty_until = '-infinity'
        WHERE tier = p_tier AND dirty_until <= v_region_hi AND watermark >= p_end;
    END IF;
END
$$;
COMMENT ON FUNCTION ts_refresh_chunk(text, timestamptz, timestamptz, integer, integer) IS
    'Refresh one chunk of a rollup tier atomically: claim its invalidations in [start, end), '
    'recompute those buckets from the source tier, write them, invalidate the next tier, move '
    'the watermark. Never overwrites or deletes a bucket older than the source''s expiry. '
    'run/seq: chunk seq of a parallel run coordinated by backend run.';

REVOKE ALL ON FUNCTION ts_refresh_chunk(text, timestamptz, timestamptz, integer, integer) FROM PUBLIC;
