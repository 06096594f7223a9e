-- What a refresh of a rollup tier covers, and how it is cut into transactions (raw → 1m → 5m →
-- 1h). See docs/rollups.md.
--
--   ts_refresh_bounds(tier, start, end)  the effective window: complete buckets only, never past
--                                        the source tier's own watermark, and reaching down to
--                                        the tier's watermark whenever it ends above it
--   ts_refresh_chunks(tier, start, end)  the window cut into chunks of bounded work
--   ts_refresh_window(tier, start, end)  both in one round trip, the steady state refreshed too
--   CALL ts_refresh(tier, start, end)    all of it from psql (53_refresh_chunk.sql per chunk)

-- The effective refresh window of `p_tier` for a requested [p_start, p_end).
--
-- NULL start means "every pending invalidation below the end" (a backfill of weeks reaches the
-- tier without naming a window); NULL end means the policy end, now() minus one bucket. A window
-- ending above the tier's watermark starts at the watermark at the latest. The end
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
    -- Above the watermark nothing is logged (51_invalidation.sql): a window ending there
    -- covers everything from the watermark on, so the watermark never jumps over time that was
    -- never materialized.
    IF window_end > v_tier.watermark THEN
        window_start := least(window_start, v_tier.watermark);
    END IF;
    IF window_start > window_end THEN
        window_start := window_end;
    END IF;
END
$$;
COMMENT ON FUNCTION ts_refresh_bounds(text, timestamptz, timestamptz) IS
    'Effective refresh window of a rollup tier: complete buckets only, capped at the source '
    'tier''s watermark; NULL start = all pending invalidations, NULL end = now() - one bucket.';

-- Cut [p_start, p_end) into contiguous chunks of bounded work, so that a huge backfill or first
-- materialization is refreshed in bounded transactions (and with progress) while the usual
-- refresh is a single chunk. The last chunk ends at p_end and moves the watermark to it.
--   * Below the watermark the work is the logged invalidations: at most p_chunk_keys each (or
--     one bucket, if a single bucket holds more). Each cut is one hop of p_chunk_keys entries
--     along the index (no sort or window function over every pending invalidation).
--   * From the watermark on (the region, materialized by range scans) the work is every
--     (series, bucket) cell: a chunk spans 4 x p_chunk_keys / series buckets (at least one). Time
--     without source data is merged into the next chunk, found by probes of doubling length
--     (a first materialization starts at the oldest partition, which may be mostly empty).
CREATE OR REPLACE FUNCTION ts_refresh_chunks(
    p_tier text, p_start timestamptz, p_end timestamptz, p_chunk_keys integer DEFAULT 50000)
RETURNS TABLE (chunk_start timestamptz, chunk_end timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE;
    v_source ts_tier%ROWTYPE;
    v_cut timestamptz;
    v_keyed_end timestamptz;
    v_at timestamptz;
    v_hi timestamptz;
    v_span interval;
    v_probe interval;
    v_found boolean;
BEGIN
    v_tier := ts_rollup_tier(p_tier);
    SELECT * INTO STRICT v_source FROM ts_tier WHERE tier = v_tier.source_tier;
    chunk_start := p_start;
    v_keyed_end := CASE WHEN p_end > v_tier.watermark
                        THEN greatest(p_start,
                                      ts_bucket_ceil(v_tier.bucket_width, v_tier.watermark))
                        ELSE p_end END;
    -- Nothing logged below the watermark (a first materialization, the fleet's steady state):
    -- no chunk of its own, the region's first chunk starts at p_start.
    IF v_keyed_end < p_end AND NOT EXISTS (
        SELECT FROM ts_invalidation i
        WHERE i.tier = p_tier AND i.bucket >= p_start AND i.bucket < v_keyed_end) THEN
        v_keyed_end := p_start;
    END IF;
    LOOP
        EXIT WHEN chunk_start >= v_keyed_end;
        -- The bucket of the first invalidation past this chunk starts the next one.
        SELECT i.bucket INTO v_cut
        FROM ts_invalidation i
        WHERE i.tier = p_tier AND i.bucket >= chunk_start AND i.bucket < v_keyed_end
        ORDER BY i.bucket
        OFFSET greatest(p_chunk_keys, 1) LIMIT 1;
        EXIT WHEN NOT FOUND;
        IF v_cut = chunk_start THEN  -- one bucket holds more: a chunk of its own
            SELECT min(i.bucket) INTO v_cut
            FROM ts_invalidation i
            WHERE i.tier = p_tier AND i.bucket > chunk_start AND i.bucket < v_keyed_end;
            EXIT WHEN v_cut IS NULL;
        END IF;
        chunk_end := v_cut;
        RETURN NEXT;
        chunk_start := v_cut;
    END LOOP;

    IF v_keyed_end < p_end THEN
        IF chunk_start < v_keyed_end THEN  -- the logged part's last chunk
            chunk_end := v_keyed_end;
            RETURN NEXT;
            chunk_start := v_keyed_end;
        END IF;
        -- Region cells are cheaper than logged keys (no key arrays): four times as many.
        v_span := v_tier.bucket_width * greatest(1, 4 * p_chunk_keys / ts_series_estimate());
        v_at := greatest(chunk_start, ts_bucket_ceil(v_tier.bucket_width, v_tier.watermark));
        IF NOT isfinite(v_at) THEN
            SELECT min(p.lo) INTO v_at FROM ts_partition p WHERE p.tier = v_source.tier;
            v_at := date_bin(v_tier.bucket_width, coalesce(v_at, p_end),
                             timestamptz '2000-01-03 00:00:00+00');
        END IF;
        WHILE v_at < p_end LOOP
            v_hi := least(v_at + v_span, p_end);
            IF v_hi < p_end AND NOT ts_source_has_data(v_source.tier, v_at, v_hi) THEN
                v_probe := v_span;
                LOOP
                    v_at := v_hi;
                    v_probe := v_probe * 2;
                    v_hi := least(v_at + v_probe, p_end);
                    v_found := ts_source_has_data(v_source.tier, v_at, v_hi);
                    EXIT WHEN v_found OR v_hi >= p_end;
                END LOOP;
                EXIT WHEN NOT v_found;  -- nothing up to the end: the last chunk takes it
                CONTINUE;
            END IF;
            chunk_end := v_hi;
            RETURN NEXT;
            chunk_start := v_hi;
            v_at := v_hi;
        END LOOP;
    END IF;
    IF chunk_start < p_end OR chunk_start IS NOT DISTINCT FROM p_start THEN
        chunk_end := p_end;
        RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION ts_refresh_chunks(text, timestamptz, timestamptz, integer) IS
    'Contiguous chunks covering a refresh window: below the watermark at most p_chunk_keys '
    'pending invalidations each (or one bucket), above it about p_chunk_keys cells each.';

-- How many series there are, for sizing chunks: the planner's estimate when there is one.
CREATE OR REPLACE FUNCTION ts_series_estimate()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    SELECT greatest(1, CASE WHEN c.reltuples > 0 THEN c.reltuples::bigint
                            ELSE (SELECT count(*) FROM ts_series) END)
    FROM pg_class c WHERE c.oid = 'ts_series'::regclass
$$;
COMMENT ON FUNCTION ts_series_estimate() IS
    'Number of series in the catalog (the planner''s estimate, else a count).';

-- Whether the source tier holds any row in [p_lo, p_hi): a probe through the time (BRIN)
-- index. A sequential scan, which the planner may pick for an EXISTS it expects to satisfy
-- early, would read a whole partition when the range is empty.
CREATE OR REPLACE FUNCTION ts_source_has_data(p_tier text, p_lo timestamptz, p_hi timestamptz)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = public, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE;
    v_found boolean;
    v_time text;
BEGIN
    SELECT * INTO STRICT v_tier FROM ts_tier WHERE tier = p_tier;
    v_time := CASE WHEN v_tier.bucket_width IS NULL THEN 'ts' ELSE 'bucket' END;
    EXECUTE format('SELECT EXISTS (SELECT FROM %I m WHERE m.%I >= %L AND m.%I < %L)',
                   v_tier.relation, v_time, p_lo, v_time, p_hi)
    INTO v_found;
    RETURN v_found;
END
$$;
COMMENT ON FUNCTION ts_source_has_data(text, timestamptz, timestamptz) IS
    'Whether a tier holds a row in a time range (a probe of its time index).';

-- What refresh() runs first, in a transaction of its own: the effective end of the window, with
-- the tier's invalidation threshold moved up to it (51_invalidation.sql). The refresh then runs
-- on snapshots taken after this commit, and writers waited only for this statement. NULL for an
-- infinite end (nothing to refresh).
CREATE OR REPLACE FUNCTION ts_refresh_begin(p_tier text, p_start timestamptz, p_end timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_end timestamptz;
    v_tier ts_tier%ROWTYPE;
    v_timeout text;
BEGIN
    SELECT b.window_end INTO v_end FROM ts_refresh_bounds(p_tier, p_start, p_end) b;
    IF NOT isfinite(v_end) THEN
        RETURN NULL;
    END IF;
    -- The source's newest pages, about to be range-scanned, get their BRIN summaries (before
    -- the threshold's row lock, which this transaction then holds only for a moment).
    SELECT * INTO v_tier FROM ts_tier WHERE tier = p_tier;
    IF v_end > v_tier.watermark THEN
        PERFORM ts_brin_summarize(v_tier.source_tier, v_tier.watermark, v_end);
    END IF;
    -- A writer's transaction left open (idle in transaction after an ingest) would hold the
    -- threshold's row lock forever, and every writer would queue behind this UPDATE: give up
    -- after a few seconds instead; the job fails with this error and the next run retries.
    v_timeout := current_setting('lock_timeout');
    PERFORM set_config('lock_timeout', '5s', true);
    PERFORM ts_invalidation_threshold_move(p_tier, v_end);
    PERFORM set_config('lock_timeout', v_timeout, true);
    RETURN v_end;
END
$$;
COMMENT ON FUNCTION ts_refresh_begin(text, timestamptz, timestamptz) IS
    'First step of a refresh, committed alone: the window end, with the tier''s invalidation '
    'threshold moved up to it.';

-- What refresh() asks first, in one round trip: the effective window of [p_start, p_end) and
-- either, when at most p_inline_keys invalidations are pending in it and the region above the
-- watermark holds at most 4 x p_chunk_keys cells (the steady state: a new minute, a few late
-- samples), the result of refreshing it right away in this statement's
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
    v_tier ts_tier%ROWTYPE;
    v_region_cells float8 := 0;
BEGIN
    SELECT b.window_start, b.window_end INTO window_start, window_end
    FROM ts_refresh_bounds(p_tier, p_start, p_end) b;
    IF window_start >= window_end THEN
        RETURN NEXT;
        RETURN;
    END IF;
    -- The region above the watermark counts as every (series, bucket) cell in it.
    v_tier := ts_rollup_tier(p_tier);
    IF window_end > v_tier.watermark THEN
        v_region_cells := CASE WHEN isfinite(v_tier.watermark)
            THEN ts_series_estimate() * extract(epoch FROM window_end - v_tier.watermark)
                 / extract(epoch FROM v_tier.bucket_width)
            ELSE 'infinity' END;
    END IF;
    -- Counted up to one past the inline limit only: an index range scan of a few entries.
    SELECT count(*) INTO v_pending
    FROM (SELECT FROM ts_invalidation i
          WHERE i.tier = p_tier AND i.bucket >= window_start AND i.bucket < window_end
          LIMIT greatest(least(p_inline_keys, p_chunk_keys), 0) + 1) p;
    IF v_pending <= least(p_inline_keys, p_chunk_keys) AND v_region_cells <= 4 * p_chunk_keys THEN
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
    v_region_lo timestamptz;
BEGIN
    v_tier := ts_rollup_tier(p_tier);
    SELECT min(i.bucket), max(i.bucket) + v_tier.bucket_width INTO v_lo, v_hi
    FROM ts_invalidation i
    WHERE i.tier = p_tier AND i.bucket >= p_start AND i.bucket < p_end;
    -- The region above the watermark (range-scanned, not logged) is work too.
    IF p_end > v_tier.watermark THEN
        v_region_lo := greatest(p_start, v_tier.watermark);
        IF NOT isfinite(v_region_lo) THEN
            SELECT min(p.lo) INTO v_region_lo FROM ts_partition p WHERE p.tier = v_tier.source_tier;
        END IF;
        IF v_region_lo IS NOT NULL THEN
            v_lo := least(v_lo, v_region_lo);
            v_hi := greatest(v_hi, p_end);
            PERFORM ts_ensure_partitions_for(p_tier, v_tier.source_tier, v_region_lo, p_end);
        END IF;
    END IF;
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
    v_starts timestamptz[];
    v_ends timestamptz[];
    v_i integer;
    v_stats record;
    v_buckets bigint := 0;
    v_written bigint := 0;
    v_deleted bigint := 0;
    v_started timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO v_bounds FROM ts_refresh_bounds(p_tier, p_window_start, p_window_end);
    SELECT array_agg(c.chunk_start ORDER BY c.chunk_start),
           array_agg(c.chunk_end ORDER BY c.chunk_start)
    INTO v_starts, v_ends
    FROM ts_refresh_chunks(p_tier, v_bounds.window_start, v_bounds.window_end) c;
    -- The invalidation threshold first, committed on its own when the refresh commits anyway
    -- (several chunks): writers then wait only for this statement, not for the whole refresh.
    IF isfinite(v_bounds.window_end) THEN
        PERFORM ts_refresh_begin(p_tier, p_window_start, v_bounds.window_end);
    END IF;
    FOR v_i IN 1..coalesce(cardinality(v_starts), 0) LOOP
        IF cardinality(v_starts) > 1 THEN
            COMMIT;
        END IF;
        SELECT * INTO v_stats FROM ts_refresh_chunk(p_tier, v_starts[v_i], v_ends[v_i]);
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


REVOKE ALL ON FUNCTION ts_refresh_bounds(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_chunks(text, timestamptz, timestamptz, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_begin(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_series_estimate() FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_source_has_data(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_window(text, timestamptz, timestamptz, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_parallel_ready(text, timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON PROCEDURE ts_refresh(text, timestamptz, timestamptz) FROM PUBLIC;
