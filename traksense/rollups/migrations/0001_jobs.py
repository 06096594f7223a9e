"""The job table: one row per scheduled job, its schedule and the outcome of its last run.

The rows are kept in step with the registry in traksense/rollups/jobs.py by the runner; the ten
of DESIGN §5 are seeded here so that `SELECT * FROM ts_jobs` answers right after migrate.
"""

from __future__ import annotations

from django.db import migrations

SQL = """
CREATE TABLE ts_job (
    name          text PRIMARY KEY,
    schedule      interval NOT NULL CHECK (schedule > interval '0'),
    description   text NOT NULL DEFAULT '',
    next_run      timestamptz NOT NULL DEFAULT now(),
    last_start    timestamptz,
    last_finish   timestamptz,
    last_duration interval,
    -- running | ok | skipped | failed; a 'running' row whose advisory lock is free belongs to a
    -- worker that died (the ts_jobs view shows it as 'crashed').
    last_status   text CHECK (last_status IN ('running', 'ok', 'skipped', 'failed')),
    last_result   text,
    last_success  timestamptz,
    last_error    text,
    last_error_at timestamptz,
    runs          bigint NOT NULL DEFAULT 0,
    failures      bigint NOT NULL DEFAULT 0,
    crashes       bigint NOT NULL DEFAULT 0,
    run_by        text,
    run_pid       integer
);
INSERT INTO ts_job (name, schedule) VALUES
    ('refresh_1m', '1 minute'), ('refresh_5m', '5 minutes'), ('refresh_1h', '1 hour'),
    ('compress_1m', '1 day'), ('compress_5m', '1 day'), ('compress_1h', '1 day'),
    ('retention_raw', '1 hour'), ('retention_1m', '1 hour'), ('retention_5m', '1 hour'),
    ('retention_1h', '1 hour');
REVOKE ALL ON ts_job FROM PUBLIC;
"""

REVERSE_SQL = """
DROP VIEW IF EXISTS ts_jobs;
DROP TABLE ts_job;
"""


class Migration(migrations.Migration):
    initial = True
    dependencies = [("tsdb", "0001_schema")]
    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
