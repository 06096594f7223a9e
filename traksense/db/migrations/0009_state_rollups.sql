-- State rollups of boolean and text points, and counters' deltas (issue 19, DESIGN §4;
-- docs/rollups.md "State rollups and counters"). One row per (series, bucket) with samples,
-- beside the numeric tiers, holding only what the samples inside the bucket decide:
--   n                  samples in the bucket
--   t_first, s_first   the first sample's instant and value (a boolean as 'true'/'false')
--   t_last, s_last     the last sample's
--   changes            value changes between consecutive samples inside the bucket
--   time_in            seconds per value held between consecutive samples inside the bucket,
--                      each hold capped at ts_state_config.max_gap; at most 16 values, the rest
--                      summed as "other"
--   v_first, v_last    counters: the first and last sample's values
--   delta              counters: the increase between consecutive samples inside the bucket, a
--                      decrease counted as a reset to zero (the sample's value is the increase
--                      since), like Prometheus' increase()
-- A counter is a numeric point marked with `traksense point set --counter` (ts_series.counter:
-- a meter's running total, reset when the meter is replaced). Boolean and text rows keep
-- v_first, v_last and delta NULL; counter rows keep s_first, s_last NULL, changes 0, time_in {}.
-- What crosses a bucket boundary (the last sample's hold into the next buckets, the change or
-- the counter's step from the previous bucket's last value) is added when reading
-- (69_read_state.sql, 69_read_counter.sql), so a bucket depends on its own samples only and the
-- refresh engine's invalidations stay exact.
--
-- Not partitioned: only boolean, text and counter series have rows (a fleet's few on/off and
-- mode points, and meters), and retention deletes by bucket (ts_state_expire). Not compressed (yet).
ALTER TABLE ts_series ADD COLUMN counter boolean NOT NULL DEFAULT false;

CREATE TABLE ts_state_1m (
    series_id bigint NOT NULL,
    bucket    timestamptz NOT NULL,
    n         integer NOT NULL CHECK (n > 0),
    t_first   timestamptz NOT NULL,
    t_last    timestamptz NOT NULL,
    s_first   text,
    s_last    text,
    changes   integer NOT NULL,
    time_in   jsonb NOT NULL,
    v_first   float8,
    v_last    float8,
    delta     float8,
    PRIMARY KEY (series_id, bucket)
);
CREATE TABLE ts_state_5m (LIKE ts_state_1m INCLUDING ALL);
CREATE TABLE ts_state_1h (LIKE ts_state_1m INCLUDING ALL);
-- The refresh of the next tier reads a tier's new rows by time, across series.
CREATE INDEX ts_state_1m_bucket ON ts_state_1m (bucket);
CREATE INDEX ts_state_5m_bucket ON ts_state_5m (bucket);
CREATE INDEX ts_state_1h_bucket ON ts_state_1h (bucket);

-- One row: the longest a value holds after its sample when no later sample comes sooner
-- (settings.STATE_MAX_GAP_SECONDS, written by migrate). Time past it counts in no state.
CREATE TABLE ts_state_config (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    max_gap interval NOT NULL DEFAULT interval '10 minutes' CHECK (max_gap > interval '0')
);
INSERT INTO ts_state_config DEFAULT VALUES;

REVOKE ALL ON ts_state_1m, ts_state_5m, ts_state_1h, ts_state_config FROM PUBLIC;

-- The refresh of a 1m region probes each boolean, text and counter series, found here: an
-- all-numeric fleet's million series cost nothing.
CREATE INDEX ts_series_state ON ts_series (series_id) WHERE kind <> 'numeric' OR counter;

-- The boolean and text samples already stored get their state rows from the next refreshes:
-- every 1m bucket holding one is invalidated (compressed raw days: each minute of the day).
INSERT INTO ts_invalidation (tier, series_id, bucket)
SELECT DISTINCT '1m', m.series_id, date_bin('1 minute', m.ts, timestamptz '2000-01-03 00:00:00+00')
FROM ts_measure m
WHERE m.v_num IS NULL;
INSERT INTO ts_invalidation (tier, series_id, bucket)
SELECT '1m', z.series_id, g
FROM ts_measure_z z
CROSS JOIN LATERAL generate_series(z.seg_start, z.seg_start + interval '1 day' - interval '1 minute',
                                   interval '1 minute') g
WHERE z.v_num IS NULL AND z.k_num IS NULL;
