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

-- Cut [p_start, p_end) into chunks of at most p_chunk_keys pending invalidations each (or one
-- bucket, if a single bucket holds more), so that a huge backfill is refreshed in bounded
-- transactions (and with progress) while the usual small refresh is a single chunk. Chunks are
-- contiguous and cover the whole window; the last one ends at p_end and is the one that moves
-- the watermark to it. Each cut is one hop of p_chunk_keys entries along the index (no sort or
-- window function over every pending invalidation: a first materialization has half a million).
CREATE OR REPLACE FUNCTION ts_refresh_chunks(
    p_tier text, p_start timestamptz, p_end timestamptz, p_chunk_keys integer DEFAULT 50000)
RETURNS TABLE (chunk_start timestamptz, chunk_end timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_cut timestamptz;
BEGIN
    chunk_start := p_start;
    LOOP
        -- The bucket of the first invalidation past this chunk starts the next one.
        SELECT i.bucket INTO v_cut
        FROM ts_invalidation i
        WHERE i.tier = p_tier AND i.bucket >= chunk_start AND i.bucket < p_end
        ORDER BY i.bucket
        OFFSET greatest(p_chunk_keys, 1) LIMIT 1;
        EXIT WHEN NOT FOUND;
        IF v_cut = chunk_start THEN  -- one bucket holds more: a chunk of its own
            SELECT min(i.bucket) INTO v_cut
            FROM ts_invalidation i
            WHERE i.tier = p_tier AND i.bucket > chunk_start AND i.bucket < p_end;
            EXIT WHEN v_cut IS NULL;
        END IF;
        chunk_end := v_cut;
        RETURN NEXT;
        chunk_start := v_cut;
    END LOOP;
    chunk_end := p_end;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION ts_refresh_chunks(text, timestamptz, timestamptz, integer) IS
    'Contiguous chunks covering a refresh window, each holding at most p_chunk_keys pending '
    'invalidations (or one bucket); one chunk when there are fewer.';

-- The refresh lock of a tier: taken by every refresh transaction (ts_refresh_chunk) and by
-- compression (55_compression.sql), so that chunks of two refreshes of a tier never interleave.
-- A parallel refresh holds it in its coordinating transaction for the whole run (see below).
CREATE OR REPLACE FUNCTION ts_refresh_lock_key(p_tier text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT hashtext('traksense.refresh.' || p_tier)::bigint
$$;
COMMENT ON FUNCTION ts_refresh_lock_key(text) IS
    'Key of the transaction advisory lock that serialises refreshes of a rollup tier.';

-- The work lock of a tier: every transaction that writes the tier's rollups or moves its data
-- holds it, the chunks of a parallel run shared, everything else (a sequential refresh chunk,
-- compression) exclusively, after the refresh lock. The refresh lock of a parallel run lives in
-- its coordinator's transaction; should that connection end (idle timeout, terminated backend,
-- lost network) while chunks are in flight, the next holder of the refresh lock still waits for
-- those chunks here, so a chunk never overlaps another refresh or a compression of its tier.
CREATE OR REPLACE FUNCTION ts_refresh_work_key(p_tier text)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT hashtext('traksense.refresh.work.' || p_tier)::bigint
$$;
COMMENT ON FUNCTION ts_refresh_work_key(text) IS
    'Key of the advisory lock held by every transaction writing a rollup tier (parallel chunks '
    'shared, others exclusive).';

-- Take the refresh lock of a tier for this transaction (waits for a running refresh) and return
-- this backend's process id: a parallel refresh passes it to its chunks as the run id.
CREATE OR REPLACE FUNCTION ts_refresh_lock(p_tier text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
BEGIN
    -- Not ts_rollup_tier(): reading ts_tier here would hold a lock on it for the whole run, and
    -- a DDL queued behind that lock would block the run's own chunks in a wait that PostgreSQL
    -- cannot see as a deadlock (the coordinator waits for them in Python).
    IF p_tier IS NULL OR p_tier NOT IN ('1m', '5m', '1h') THEN
        RAISE EXCEPTION 'unknown rollup tier %', coalesce(quote_literal(p_tier), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(ts_refresh_lock_key(p_tier));
    -- Chunks of an earlier run whose coordinator is gone may still be in flight: wait for them
    -- (a session lock taken and released at once, as this run's own chunks take it shared).
    PERFORM pg_advisory_lock(ts_refresh_work_key(p_tier));
    PERFORM pg_advisory_unlock(ts_refresh_work_key(p_tier));
    -- The coordinator idles in its transaction for the whole run: a server-side idle timeout
    -- must not end it (its chunks would then be refused, and the run fail, for nothing).
    PERFORM set_config('idle_in_transaction_session_timeout', '0', true);
    RETURN pg_backend_pid();
END
$$;
COMMENT ON FUNCTION ts_refresh_lock(text) IS
    'Take the refresh lock of a rollup tier for this transaction; returns the backend pid.';

-- The "chunk in flight" lock of chunk p_seq of parallel run p_run (the coordinator's pid) is
-- (ts_refresh_run_key(tier, run), p_seq): held by the chunk's transaction from its first
-- statement to its end, so that the next chunk can wait for it to end before it moves the
-- watermark (ts_refresh_chunk, step 4).
CREATE OR REPLACE FUNCTION ts_refresh_run_key(p_tier text, p_run integer)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT hashtext('traksense.refresh.' || p_tier || '.' || p_run)
$$;
COMMENT ON FUNCTION ts_refresh_run_key(text, integer) IS
    'First key of the in-flight locks of the chunks of parallel refresh run p_run.';

CREATE OR REPLACE FUNCTION ts_refresh_chunk_begin(p_tier text, p_run integer, p_seq integer)
RETURNS void
LANGUAGE sql
AS $$
    SELECT pg_advisory_xact_lock(ts_refresh_run_key(p_tier, p_run), p_seq)
$$;
COMMENT ON FUNCTION ts_refresh_chunk_begin(text, integer, integer) IS
    'First statement of chunk p_seq of a parallel refresh run: its in-flight lock.';

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
    -- Read after the lock: retention may just have moved the source's expired_before.
    SELECT * INTO STRICT v_source FROM ts_tier WHERE tier = v_tier.source_tier;
    SELECT * INTO v_next FROM ts_tier WHERE source_tier = p_tier;

    -- 1. Claim. Duplicates (one per writing statement) collapse to one key.
    WITH claimed AS (
        DELETE FROM ts_invalidation i
        WHERE i.tier = p_tier AND i.bucket >= p_start AND i.bucket < p_end
        RETURNING i.series_id, i.bucket
    )
    SELECT (SELECT count(*) FROM claimed), array_agg(k.series_id), array_agg(k.bucket)
    INTO invalidations, v_key_series, v_key_bucket
    FROM (SELECT DISTINCT c.series_id, c.bucket FROM claimed c) k;
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

        -- Compressed ranges (55_compression.sql): restore the segments about to be written,
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

        -- 2. Recompute, into arrays. Aggregates of the source: raw samples, or the finer
        -- tier's partial aggregates.
        v_time := CASE WHEN v_source.bucket_width IS NULL THEN 'ts' ELSE 'bucket' END;
        v_agg := CASE WHEN v_source.bucket_width IS NULL
            THEN 'sum(m.v_num) AS v_sum, min(m.v_num) AS v_min, max(m.v_num) AS v_max,
                  count(*)::integer AS n'
            ELSE 'sum(m.v_sum) AS v_sum, min(m.v_min) AS v_min, max(m.v_max) AS v_max,
                  sum(m.n)::integer AS n' END;
        v_numeric := CASE WHEN v_source.bucket_width IS NULL THEN 'AND m.v_num IS NOT NULL'
                          ELSE '' END;
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
                 FROM changed c WHERE $2 IS NOT NULL
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
              v_key_series, v_key_bucket;
    END IF;

    -- 4. The watermark moves with the data, in the same transaction. In a parallel run, only
    -- once the previous chunk has ended, and only if it committed (see above).
    IF p_seq IS NULL OR p_seq <= 1 THEN
        UPDATE ts_tier SET watermark = p_end WHERE tier = p_tier AND watermark < p_end;
    ELSE
        PERFORM pg_advisory_xact_lock_shared(ts_refresh_run_key(p_tier, p_run), p_seq - 1);
        UPDATE ts_tier SET watermark = p_end
        WHERE tier = p_tier AND watermark >= p_start AND watermark < p_end;
    END IF;
END
$$;
COMMENT ON FUNCTION ts_refresh_chunk(text, timestamptz, timestamptz, integer, integer) IS
    'Refresh one chunk of a rollup tier atomically: claim its invalidations in [start, end), '
    'recompute those buckets from the source tier, write them, invalidate the next tier, move '
    'the watermark. Never overwrites or deletes a bucket older than the source''s expiry. '
    'run/seq: chunk seq of a parallel run coordinated by backend run.';

-- What refresh() asks first, in one round trip: the effective window of [p_start, p_end) and
-- either, when at most p_inline_keys invalidations are pending in it (the steady state: a new
-- minute, a few late samples), the result of refreshing it right away in this statement's
-- transaction (one row, stats set); or its chunks (stats NULL), for the caller to run in a
-- transaction each; or one row without a chunk for an empty window. Only small refreshes run
-- inline: a statement sent in autocommit mode commits even when its client dies meanwhile
-- (all or nothing still), while a long one is better run in an explicit transaction, which a
-- killed worker leaves uncommitted, so that the next run redoes it.
CREATE OR REPLACE FUNCTION ts_refresh_window(
    p_tier text, p_start timestamptz, p_end timestamptz, p_chunk_keys integer DEFAULT 50000,
    p_inline_keys integer DEFAULT 1000)
RETURNS TABLE (window_start timestamptz, window_end timestamptz,
               chunk_start timestamptz, chunk_end timestamptz,
               invalidations bigint, buckets bigint, rows_written bigint,
               rows_deleted bigint, strategy text)
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_pending bigint;
BEGIN
    SELECT b.window_start, b.window_end INTO window_start, window_end
    FROM ts_refresh_bounds(p_tier, p_start, p_end) b;
    IF window_start >= window_end THEN
        RETURN NEXT;
        RETURN;
    END IF;
    -- Counted up to one past the inline limit only: an index range scan of a few entries.
    SELECT count(*) INTO v_pending
    FROM (SELECT FROM ts_invalidation i
          WHERE i.tier = p_tier AND i.bucket >= window_start AND i.bucket < window_end
          LIMIT greatest(least(p_inline_keys, p_chunk_keys), 0) + 1) p;
    IF v_pending <= least(p_inline_keys, p_chunk_keys) THEN
        chunk_start := window_start;
        chunk_end := window_end;
        SELECT c.invalidations, c.buckets, c.rows_written, c.rows_deleted, c.strategy
        INTO invalidations, buckets, rows_written, rows_deleted, strategy
        FROM ts_refresh_chunk(p_tier, window_start, window_end) c;
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT window_start, window_end, c.chunk_start, c.chunk_end,
               NULL::bigint, NULL::bigint, NULL::bigint, NULL::bigint, NULL::text
        FROM ts_refresh_chunks(p_tier, window_start, window_end, p_chunk_keys) c;
END
$$;
COMMENT ON FUNCTION ts_refresh_window(text, timestamptz, timestamptz, integer, integer) IS
    'Effective window of a refresh and, when at most inline_keys invalidations are pending in '
    'it, the window refreshed at once (stats set); otherwise its chunks (stats NULL).';

-- Before a parallel run over [p_start, p_end): create the tier's partitions for every pending
-- bucket (a chunk creating one would hold an exclusive lock on the tier until it commits, and
-- the chunk before it could wait on that lock while it waits for that chunk: a deadlock), and
-- say whether the run may go parallel: not when a compressed range of the tier or its source
-- is involved (decompression serialises on a lock held to commit, the same hazard). Partitions
-- are found by jumping from one pending bucket to the first one of the next partition (a few
-- index probes, however many invalidations are pending).
CREATE OR REPLACE FUNCTION ts_refresh_parallel_ready(
    p_tier text, p_start timestamptz, p_end timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_origin constant timestamptz := timestamptz '2000-01-03 00:00:00+00';
    v_tier ts_tier%ROWTYPE;
    v_lo timestamptz;
    v_hi timestamptz;
    v_partitions timestamptz[];
BEGIN
    v_tier := ts_rollup_tier(p_tier);
    SELECT min(i.bucket), max(i.bucket) + v_tier.bucket_width INTO v_lo, v_hi
    FROM ts_invalidation i
    WHERE i.tier = p_tier AND i.bucket >= p_start AND i.bucket < p_end;
    IF v_lo IS NULL THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM ts_partition p
               WHERE p.tier IN (p_tier, v_tier.source_tier) AND p.compressed_at IS NOT NULL
                 AND p.hi > v_lo AND p.lo <= v_hi) THEN
        RETURN false;
    END IF;
    WITH RECURSIVE part(lo) AS (
        SELECT date_bin(v_tier.partition_width, v_lo, v_origin)
        UNION ALL
        SELECT date_bin(v_tier.partition_width, n.bucket, v_origin)
        FROM part
        CROSS JOIN LATERAL (
            SELECT i.bucket FROM ts_invalidation i
            WHERE i.tier = p_tier AND i.bucket >= part.lo + v_tier.partition_width
              AND i.bucket < p_end
            ORDER BY i.bucket LIMIT 1) n
    )
    SELECT array_agg(part.lo) INTO v_partitions
    FROM part
    WHERE NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = p_tier AND p.lo = part.lo);
    IF v_partitions IS NOT NULL THEN
        PERFORM ts_create_partitions(p_tier, v_partitions);
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION ts_refresh_parallel_ready(text, timestamptz, timestamptz) IS
    'Prepare a parallel refresh of a window: create the partitions its chunks will write; '
    'false when it must run sequentially (nothing pending, or compressed ranges involved).';

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
REVOKE ALL ON FUNCTION ts_refresh_lock_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_lock(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_work_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_run_key(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_chunk_begin(text, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_chunk(text, timestamptz, timestamptz, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_window(text, timestamptz, timestamptz, integer, integer)
    FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_parallel_ready(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON PROCEDURE ts_refresh(text, timestamptz, timestamptz) FROM PUBLIC;
