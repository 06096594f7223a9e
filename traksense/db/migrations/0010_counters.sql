-- Counters (issue 19, DESIGN §4): a numeric point marked as a counter (`traksense point set
-- --counter`: a meter's running total, reset when the meter is replaced) also keeps, per bucket,
-- in the state tables beside its numeric rows:
--   v_first, v_last   the first and last sample's values (t_first, t_last: their instants)
--   delta             the increase between consecutive samples inside the bucket, a decrease
--                     counted as a reset to zero (the sample's value is the increase since),
--                     like Prometheus' increase()
-- Reading adds the step from the previous bucket's last value to the bucket's first
-- (65_read_counter.sql). State (boolean, text) rows keep these NULL; counter rows keep s_first,
-- s_last NULL, changes 0 and time_in {}.
ALTER TABLE ts_series ADD COLUMN counter boolean NOT NULL DEFAULT false;

ALTER TABLE ts_state_1m ALTER COLUMN s_first DROP NOT NULL, ALTER COLUMN s_last DROP NOT NULL,
    ADD COLUMN v_first float8, ADD COLUMN v_last float8, ADD COLUMN delta float8;
ALTER TABLE ts_state_5m ALTER COLUMN s_first DROP NOT NULL, ALTER COLUMN s_last DROP NOT NULL,
    ADD COLUMN v_first float8, ADD COLUMN v_last float8, ADD COLUMN delta float8;
ALTER TABLE ts_state_1h ALTER COLUMN s_first DROP NOT NULL, ALTER COLUMN s_last DROP NOT NULL,
    ADD COLUMN v_first float8, ADD COLUMN v_last float8, ADD COLUMN delta float8;

-- The series with state rows: boolean, text, and counters.
DROP INDEX ts_series_state;
CREATE INDEX ts_series_state ON ts_series (series_id) WHERE kind <> 'numeric' OR counter;
