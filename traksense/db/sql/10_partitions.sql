-- Time partitions of the raw table and of every tier: created ahead by jobs and on demand by
-- writes, so that a sample for a time with no partition yet is never lost.

COMMENT ON TABLE ts_partition IS
    'Every time partition TrakSense created, with its bounds; retention drops whole partitions.';

-- Start of the partition of `p_tier` holding instant `p_at`. Partitions are aligned to a Monday
-- at 00:00 UTC so that 1-day and 7-day partitions start on calendar boundaries.
CREATE OR REPLACE FUNCTION ts_partition_start(p_tier text, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT date_bin(t.partition_width, p_at, timestamptz '2000-01-03 00:00:00+00')
    FROM ts_tier t WHERE t.tier = p_tier
$$;
COMMENT ON FUNCTION ts_partition_start(text, timestamptz) IS
    'Lower bound of the partition of a tier that holds the given instant.';

-- The state rows' partition of a rollup tier that starts at p_lo (0011_state_storage.sql).
CREATE OR REPLACE FUNCTION ts_state_partition(p_tier text, p_lo timestamptz)
RETURNS text
LANGUAGE sql STABLE
AS $$ SELECT 'ts_state_' || p_tier || '_p' || to_char(p_lo AT TIME ZONE 'UTC', 'YYYYMMDD') $$;
COMMENT ON FUNCTION ts_state_partition(text, timestamptz) IS
    'Name of the state rows'' partition of a rollup tier starting at an instant.';

-- Create the state rows' partition of a rollup tier for [p_lo, p_hi) if it is missing; true when
-- it was. Created on its own and then attached: ATTACH PARTITION locks the parent SHARE UPDATE
-- EXCLUSIVE, which readers do not wait for, where CREATE TABLE ... PARTITION OF locks it ACCESS
-- EXCLUSIVE; with the numeric parent locked so by the same transaction, a reader of a state and
-- then a numeric series (POST /data/query) could deadlock with it.
CREATE OR REPLACE FUNCTION ts_state_partition_create(
    p_tier text, p_lo timestamptz, p_hi timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_name constant text := ts_state_partition(p_tier, p_lo);
BEGIN
    IF to_regclass(v_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   v_name, 'ts_state_' || p_tier);
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', v_name);
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   'ts_state_' || p_tier, v_name, p_lo, p_hi);
    RETURN true;
END
$$;
COMMENT ON FUNCTION ts_state_partition_create(text, timestamptz, timestamptz) IS
    'Internal: create the state rows'' partition of a rollup tier for a range if it is missing.';
REVOKE ALL ON FUNCTION ts_state_partition_create(text, timestamptz, timestamptz) FROM PUBLIC;

-- Create the partitions of `p_tier` whose ranges start at the given instants (any instant inside
-- a partition names it). Idempotent and safe under concurrency: creators of one tier serialise
-- on an advisory lock and re-check the registry.
CREATE OR REPLACE FUNCTION ts_create_partitions(p_tier text, p_instants timestamptz[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
    v_tier ts_tier%ROWTYPE;
    v_lo timestamptz;
    v_name text;
    v_created integer := 0;
BEGIN
    SELECT * INTO STRICT v_tier FROM ts_tier WHERE tier = p_tier;
    PERFORM pg_advisory_xact_lock(hashtext('traksense.partitions.' || p_tier));
    FOR v_lo IN
        SELECT DISTINCT ts_partition_start(p_tier, i) FROM unnest(p_instants) AS i
        WHERE i IS NOT NULL AND isfinite(i)
        ORDER BY 1
    LOOP
        -- A rollup tier's state rows (0011_state_storage.sql) get the sibling partition, with
        -- the same bounds: created, compressed and dropped with it; also when the numeric one
        -- exists already (one made by the definitions before 0011's, while migrate ran).
        IF v_tier.bucket_width IS NOT NULL THEN
            PERFORM ts_state_partition_create(p_tier, v_lo, v_lo + v_tier.partition_width);
        END IF;
        CONTINUE WHEN EXISTS (SELECT FROM ts_partition WHERE tier = p_tier AND lo = v_lo);
        v_name := v_tier.relation || '_p' || to_char(v_lo AT TIME ZONE 'UTC', 'YYYYMMDD');
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_tier.relation, v_lo, v_lo + v_tier.partition_width);
        EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', v_name);
        INSERT INTO ts_partition (name, tier, lo, hi)
        VALUES (v_name, p_tier, v_lo, v_lo + v_tier.partition_width);
        v_created := v_created + 1;
    END LOOP;
    RETURN v_created;
END
$$;
COMMENT ON FUNCTION ts_create_partitions(text, timestamptz[]) IS
    'Create (if missing) the partitions of a tier containing the given instants.';

-- Partitions of `p_tier` covering [p_from, p_to): what jobs call ahead of time.
CREATE OR REPLACE FUNCTION ts_ensure_partitions(p_tier text, p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE sql
AS $$
    SELECT ts_create_partitions(p_tier, array_agg(g))
    FROM ts_tier t,
         generate_series(ts_partition_start(p_tier, p_from), p_to - interval '1 microsecond',
                         t.partition_width) AS g
    WHERE t.tier = p_tier
$$;
COMMENT ON FUNCTION ts_ensure_partitions(text, timestamptz, timestamptz) IS
    'Create the partitions of a tier covering a time range (used ahead of time by jobs).';

-- Partitions of `p_tier` for every instant of [p_from, p_to) that a partition of `p_source`
-- covers: what a refresh writing that range from its source needs, and no empty partitions for
-- time the source never held. One look at the registry when they exist already.
CREATE OR REPLACE FUNCTION ts_ensure_partitions_for(
    p_tier text, p_source text, p_from timestamptz, p_to timestamptz)
RETURNS integer
LANGUAGE sql
SET search_path = public, pg_temp
AS $$
    SELECT coalesce(ts_create_partitions(p_tier, array_agg(n.lo)), 0)
    FROM (SELECT DISTINCT ts_partition_start(p_tier, g) AS lo
          FROM ts_partition s, ts_tier t,
               generate_series(greatest(s.lo, p_from), least(s.hi, p_to) - interval '1 microsecond',
                               t.partition_width) AS g
          WHERE s.tier = p_source AND s.hi > p_from AND s.lo < p_to AND t.tier = p_tier
          UNION
          SELECT ts_partition_start(p_tier, least(s.hi, p_to) - interval '1 microsecond')
          FROM ts_partition s
          WHERE s.tier = p_source AND s.hi > p_from AND s.lo < p_to) n
    WHERE NOT EXISTS (SELECT FROM ts_partition p WHERE p.tier = p_tier AND p.lo = n.lo)
    HAVING count(*) > 0
$$;
COMMENT ON FUNCTION ts_ensure_partitions_for(text, text, timestamptz, timestamptz) IS
    'Create the partitions of a tier covering the source tier''s partitions within a range.';
REVOKE ALL ON FUNCTION ts_ensure_partitions_for(text, text, timestamptz, timestamptz) FROM PUBLIC;

-- Summarize the BRIN (time) indexes of a tier's partitions overlapping [p_from, p_to). BRIN
-- summarizes a page range only when asked (or by VACUUM), and an unsummarized range matches
-- every scan: without this, a refresh's range scan of the newest minutes would read everything
-- written since the partition was last vacuumed. Cost: one read of the pages written since the
-- last call, which a refresh is about to read anyway. Run it in a short transaction of its own
-- (refresh's first step): it holds SHARE UPDATE EXCLUSIVE on the partitions until commit.
CREATE OR REPLACE FUNCTION ts_brin_summarize(p_tier text, p_from timestamptz, p_to timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = public, pg_temp
AS $$
DECLARE
    v_index regclass;
    v_ranges bigint := 0;
BEGIN
    FOR v_index IN
        SELECT i.indexrelid::regclass
        FROM ts_partition p
        JOIN pg_index i ON i.indrelid = to_regclass(p.name)
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_am a ON a.oid = c.relam AND a.amname = 'brin'
        WHERE p.tier = p_tier AND p.hi > p_from AND p.lo < p_to AND p.compressed_at IS NULL
        ORDER BY p.lo
    LOOP
        v_ranges := v_ranges + brin_summarize_new_values(v_index);
    END LOOP;
    RETURN v_ranges;
END
$$;
COMMENT ON FUNCTION ts_brin_summarize(text, timestamptz, timestamptz) IS
    'Summarize the new page ranges of the BRIN indexes of a tier''s partitions in a time range.';
REVOKE ALL ON FUNCTION ts_brin_summarize(text, timestamptz, timestamptz) FROM PUBLIC;

-- Every registered rollup partition has its state sibling (a partition the definitions before
-- 0011's registered while migrate ran has none yet): made here, on every migrate.
DO $repair$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT pa.tier, pa.lo, pa.hi FROM ts_partition pa
             JOIN ts_tier t ON t.tier = pa.tier AND t.bucket_width IS NOT NULL
             WHERE to_regclass(ts_state_partition(pa.tier, pa.lo)) IS NULL
             ORDER BY pa.tier, pa.lo LOOP
        PERFORM pg_advisory_xact_lock(hashtext('traksense.partitions.' || p.tier));
        PERFORM ts_state_partition_create(p.tier, p.lo, p.hi);
    END LOOP;
END
$repair$;
