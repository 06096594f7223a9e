-- Invalidation: which writes a rollup tier must recompute, and which it need not be told about.
--
-- Every change of a tier's source (raw samples for 1m, the 1m rollups for 5m, 5m for 1h) below
-- the tier's *invalidation threshold* is logged in ts_invalidation as a (series, bucket) key, and
-- the next refresh recomputes exactly those buckets. Changes at or above the threshold are not
-- logged at all: the refresh materializes everything from the tier's watermark on with one range
-- scan of the source, then moves the watermark. At fleet shape (one sample per series and minute)
-- every new sample is its own key, so logging it would double the write work; with the threshold,
-- only late data, overwrites and deletes are logged. (TimescaleDB's continuous aggregates do the
-- same: invalidation_threshold.c.)
--
-- Exactness under concurrency rests on one lock, the FOR SHARE row lock on the tier's row of
-- ts_invalidation_threshold:
--   * a writer reads the threshold with ts_invalidation_threshold_share() and holds that lock
--     until it commits;
--   * a refresh moves the threshold (ts_invalidation_threshold_move) in a transaction of its own
--     that commits before the refresh reads the source; its UPDATE waits for every writer that
--     read the old threshold, and writers that come later wait for it and read the new one.
-- So a write below the new threshold is either logged (its writer read the new threshold) or
-- committed before the move did, hence visible to the refresh's range scan, which starts after
-- the move. Never neither. A locking read also never sees a stale threshold: in READ COMMITTED
-- it returns the newest committed version, in REPEATABLE READ it fails with a serialization
-- error rather than return an old one.
--
-- Invariant: threshold >= watermark (the refresh moves the threshold first). A refresh that finds
-- the threshold below the end it is about to materialize (ts_refresh_chunk called inside a
-- caller's transaction) moves it in its own transaction instead: still exact, but writers of the
-- source then wait for that refresh to commit.

CREATE OR REPLACE FUNCTION ts_invalidation_threshold_share(p_tier text)
RETURNS timestamptz
LANGUAGE sql VOLATILE
SET search_path = public, pg_temp
AS $$
    SELECT t.threshold FROM ts_invalidation_threshold t WHERE t.tier = p_tier FOR SHARE
$$;
COMMENT ON FUNCTION ts_invalidation_threshold_share(text) IS
    'A writer''s read of a tier''s invalidation threshold: changes of the source below it must be '
    'logged. Holds a FOR SHARE lock until commit, which a threshold move waits for.';

-- Move a tier's threshold up to p_end (never down); returns the threshold. Run it in its own
-- transaction and commit before refreshing up to p_end: the UPDATE waits for the writers that
-- read the old threshold, and their data is visible to every snapshot taken after the commit.
CREATE OR REPLACE FUNCTION ts_invalidation_threshold_move(p_tier text, p_end timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_threshold timestamptz;
BEGIN
    UPDATE ts_invalidation_threshold SET threshold = p_end
    WHERE tier = p_tier AND threshold < p_end
    RETURNING threshold INTO v_threshold;
    IF v_threshold IS NULL THEN
        SELECT threshold INTO v_threshold FROM ts_invalidation_threshold WHERE tier = p_tier;
    END IF;
    RETURN v_threshold;
END
$$;
COMMENT ON FUNCTION ts_invalidation_threshold_move(text, timestamptz) IS
    'Raise a tier''s invalidation threshold to an instant (waits for writers that read the old '
    'one); commit before refreshing up to it. Returns the threshold.';

-- Every change of numeric raw data below the 1m threshold marks its 1-minute bucket for
-- recomputation. Statement-level triggers with transition tables cost one set-based INSERT per
-- statement, whatever the row count. ts_ingest, which knows its batch's time range, tells the
-- trigger (traksense.batch_lo) when the whole batch lies at or above the threshold: then the
-- transition table is not even read.
CREATE OR REPLACE FUNCTION ts_measure_invalidate()
RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_threshold timestamptz;
    v_batch_lo text;
BEGIN
    -- Samples restored from the compressed store (ts_decompress_for) are not a change of data.
    IF current_setting('traksense.restoring', true) = 'on' THEN
        RETURN NULL;
    END IF;
    v_threshold := ts_invalidation_threshold_share('1m');
    v_batch_lo := current_setting('traksense.batch_lo', true);
    -- Every kind is logged: boolean and text samples have state rollups (54_state_refresh.sql).
    -- Buckets, not instants, are compared with the threshold: a threshold inside a bucket (a
    -- refresh ended mid-bucket) still has every later write into that bucket logged.
    IF TG_OP = 'INSERT' AND v_batch_lo <> '' AND date_bin('1 minute', v_batch_lo::timestamptz,
                                                          timestamptz '2000-01-03 00:00:00+00')
                                                 >= v_threshold THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO ts_invalidation (tier, series_id, bucket)
        SELECT DISTINCT '1m', r.series_id, r.bucket
        FROM (SELECT n.series_id,
                     date_bin('1 minute', n.ts, timestamptz '2000-01-03 00:00:00+00') AS bucket
              FROM ts_new_rows n) r
        WHERE r.bucket < v_threshold;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO ts_invalidation (tier, series_id, bucket)
        SELECT DISTINCT '1m', r.series_id, r.bucket
        FROM (SELECT o.series_id,
                     date_bin('1 minute', o.ts, timestamptz '2000-01-03 00:00:00+00') AS bucket
              FROM ts_old_rows o) r
        WHERE r.bucket < v_threshold;
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

REVOKE ALL ON FUNCTION ts_invalidation_threshold_share(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_invalidation_threshold_move(text, timestamptz) FROM PUBLIC;
