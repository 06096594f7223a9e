-- Jobs as SQL users see them, and the lock that keeps two workers off the same job.
-- The ts_job table is created by traksense/rollups/migrations/0001_jobs.py; the runner
-- (traksense/rollups/runner.py) writes it. See docs/operations-jobs.md.

COMMENT ON TABLE ts_job IS
    'One row per scheduled job: schedule, next run and the outcome of the last run. '
    'Written by the job runner; read it through the ts_jobs view.';

-- A job runs while its runner holds a session-level advisory lock (class 29779, key
-- hashtext(name)) on a connection of its own. PostgreSQL releases the lock when that session
-- ends, so a worker killed with -9 frees its jobs by itself.
CREATE OR REPLACE FUNCTION ts_job_try_lock(p_name text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_try_advisory_lock(29779, hashtext(p_name))
$$;
COMMENT ON FUNCTION ts_job_try_lock(text) IS
    'Take the run lock of a job for this session without waiting; false when another holds it.';

CREATE OR REPLACE FUNCTION ts_job_unlock(p_name text)
RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_advisory_unlock(29779, hashtext(p_name))
$$;
COMMENT ON FUNCTION ts_job_unlock(text) IS 'Release the run lock of a job held by this session.';

-- The backend holding a job's run lock, or NULL when nobody runs it.
CREATE OR REPLACE FUNCTION ts_job_lock_holder(p_name text)
RETURNS integer
LANGUAGE sql STABLE
AS $$
    SELECT l.pid FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = 29779 AND l.objid = hashtext(p_name)::oid
    LIMIT 1
$$;
COMMENT ON FUNCTION ts_job_lock_holder(text) IS
    'Process id of the backend that holds the run lock of a job (NULL: not running).';

CREATE OR REPLACE VIEW ts_jobs AS
SELECT j.name,
       j.schedule,
       j.next_run,
       -- 'running' with nobody holding the lock: the worker died mid-run. The next run of the
       -- job counts it as a crash and starts over.
       CASE WHEN j.last_status = 'running' AND h.pid IS NULL THEN 'crashed'
            ELSE coalesce(j.last_status, 'never run') END AS status,
       j.last_start,
       j.last_finish,
       j.last_duration,
       j.last_result,
       j.last_success,
       j.last_error,
       j.last_error_at,
       j.runs,
       j.failures,
       j.crashes,
       j.run_by,
       h.pid AS lock_pid,
       h.pid IS NULL AND (j.next_run <= now() OR j.last_status = 'running') AS due,
       j.description
FROM ts_job j
LEFT JOIN LATERAL (SELECT ts_job_lock_holder(j.name) AS pid) h ON true;
COMMENT ON VIEW ts_jobs IS
    'Scheduled jobs (refresh, compression, retention per tier): schedule, next run, status of '
    'the last run (running, ok, skipped, failed, crashed, never run), its start, finish, '
    'duration, result and error, run/failure/crash counts, and whether it is due now.';

REVOKE ALL ON ts_job, ts_jobs FROM PUBLIC;
REVOKE ALL ON FUNCTION ts_job_try_lock(text), ts_job_unlock(text), ts_job_lock_holder(text)
    FROM PUBLIC;
