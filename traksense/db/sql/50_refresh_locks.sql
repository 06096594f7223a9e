-- The refresh engine's building blocks: the tier lookup and the locks that order refreshes of a
-- tier among themselves and with compression. The engine itself: 52_refresh_window.sql (what a
-- refresh covers, cut into chunks) and 53_refresh_chunk.sql (one chunk, atomically); what it
-- must recompute: 51_invalidation.sql. See docs/rollups.md.

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

-- The first bucket boundary at or after an instant (infinities pass through): where a region
-- starting mid-bucket begins (53_refresh_chunk.sql).
CREATE OR REPLACE FUNCTION ts_bucket_ceil(p_width interval, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN NOT isfinite(p_at) THEN p_at
                WHEN b.b = p_at THEN b.b ELSE b.b + p_width END
    FROM (SELECT date_bin(p_width, p_at, timestamptz '2000-01-03 00:00:00+00')) b(b)
$$;
COMMENT ON FUNCTION ts_bucket_ceil(interval, timestamptz) IS
    'The first bucket boundary (UTC-aligned, like date_bin) at or after an instant.';

-- The refresh lock of a tier: taken by every refresh transaction (ts_refresh_chunk) and by
-- compression (57_compress.sql), so that chunks of two refreshes of a tier never interleave.
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


REVOKE ALL ON FUNCTION ts_rollup_tier(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_lock_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_lock(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_work_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_run_key(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_refresh_chunk_begin(text, integer, integer) FROM PUBLIC;
