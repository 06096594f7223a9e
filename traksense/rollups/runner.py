"""Run one job: claim it, run its body, record the outcome in ts_job.

The claim is a session-level advisory lock (ts_job_try_lock) taken on a control connection of
the runner's own, held for the whole run and released at the end; every ts_job write goes
through that connection too, in autocommit, so the status is visible at once and never waits on
the job's own transactions. The body runs on Django's default connection of this thread.

Order matters for crash detection: the lock is taken before the row says 'running', and the row
says how the run ended before the lock is released. So a 'running' row whose lock is free can
only belong to a worker that died; the next claim counts it as a crash (a failure) and runs the
job again. A body does its work in transactions or idempotent steps, so a killed run leaves no
partial result and the next run completes it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from django.db import DEFAULT_DB_ALIAS, connections

from traksense.rollups.jobs import JOBS, Job

log = logging.getLogger(__name__)

Status = Literal["ok", "skipped", "failed", "busy"]
MAX_ERROR = 4000


@dataclass(frozen=True)
class Outcome:
    job: str
    status: Status  # busy: another worker holds the job, nothing was run
    detail: str  # the body's result, the error, or who holds the job
    duration: timedelta | None = None
    crash: str | None = None  # set when this claim found the previous run dead

    def line(self) -> str:
        took = f" in {self.duration.total_seconds():.3f} s" if self.duration is not None else ""
        text = f"{self.job}: {self.status}{took} - {self.detail}"
        return f"{text} (after a crash: {self.crash})" if self.crash else text


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sync_jobs(jobs: tuple[Job, ...] | list[Job] = JOBS) -> None:
    """Make sure every job has its row with its current schedule and description."""
    control = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with control.cursor() as cursor:
            for job in jobs:
                _sync(cursor, job)
    finally:
        control.close()


def run_job(job: Job, worker: str | None = None, only_if_due: bool = False) -> Outcome:
    """Run `job` now unless another runner holds it (then status 'busy', nothing run).

    With `only_if_due` (the scheduler's way) the job also counts as busy when, by the time we
    hold it, another worker has already run it for this period.
    """
    worker = worker or worker_id()
    control = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with control.cursor() as cursor:
            _sync(cursor, job)
            cursor.execute("SELECT ts_job_try_lock(%s)", [job.name])
            if not cursor.fetchone()[0]:
                return Outcome(job.name, "busy", _holder(cursor, job.name))
            try:
                claimed, crash = _claim(cursor, job, worker, only_if_due)
                if not claimed:
                    return Outcome(job.name, "busy", "another worker ran it for this period")
                if crash:
                    log.warning("%s: previous run crashed: %s", job.name, crash)
                return _execute(cursor, job, crash)
            finally:
                cursor.execute("SELECT ts_job_unlock(%s)", [job.name])
    finally:
        control.close()


def _sync(cursor: Any, job: Job) -> None:
    cursor.execute(
        "INSERT INTO ts_job (name, schedule, description) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE"
        " SET schedule = excluded.schedule, description = excluded.description"
        " WHERE (ts_job.schedule, ts_job.description)"
        " IS DISTINCT FROM (excluded.schedule, excluded.description)",
        [job.name, job.schedule, job.description],
    )


def _holder(cursor: Any, name: str) -> str:
    cursor.execute("SELECT last_start, run_by, lock_pid FROM ts_jobs WHERE name = %s", [name])
    row = cursor.fetchone()
    if row is None or row[0] is None:
        return "already running"
    return f"already running (started {row[0]:%Y-%m-%d %H:%M:%S%z} by {row[1]}, backend {row[2]})"


def _claim(cursor: Any, job: Job, worker: str, only_if_due: bool) -> tuple[bool, str | None]:
    """Mark the job running (we hold its lock). Returns whether it was claimed and, when the
    previous run had died, a description of that crash."""
    cursor.execute(
        """
        WITH prev AS (
            SELECT name, last_status IS NOT DISTINCT FROM 'running' AS crashed, last_start, run_by
            FROM ts_job WHERE name = %(name)s FOR UPDATE
        ), crash AS (
            SELECT name, crashed, CASE WHEN crashed THEN format(
                'the run started %%s by %%s ended without recording an outcome (worker killed '
                'or disconnected); detected %%s', last_start, run_by, now()) END AS error
            FROM prev
        )
        UPDATE ts_job j
        SET last_status = 'running', last_start = now(), run_by = %(worker)s,
            run_pid = pg_backend_pid(), runs = j.runs + 1,
            -- Not due again while it runs; the outcome sets the real next run.
            next_run = now() + j.schedule,
            crashes = j.crashes + c.crashed::int,
            failures = j.failures + c.crashed::int,
            last_error = coalesce(c.error, j.last_error),
            last_error_at = CASE WHEN c.crashed THEN now() ELSE j.last_error_at END
        FROM crash c
        WHERE j.name = c.name AND (NOT %(only_if_due)s OR c.crashed OR j.next_run <= now())
        RETURNING c.error
        """,
        {"name": job.name, "worker": worker, "only_if_due": only_if_due},
    )
    row = cursor.fetchone()
    return (row is not None, row[0] if row else None)


def _execute(cursor: Any, job: Job, crash: str | None) -> Outcome:
    status: Status
    error: str | None = None
    try:
        result = job.body()
        status, detail = result.status, result.summary
    except Exception as exc:
        log.exception("job %s failed", job.name)
        status, detail = "failed", ""
        error = _error_text(exc)
    except BaseException as exc:
        # Ctrl-C or SystemExit in `jobs run`: say so before the lock goes, then let it through.
        _finish(cursor, job.name, "failed", "", f"interrupted ({type(exc).__name__})")
        raise
    duration = _finish(cursor, job.name, status, detail, error)
    return Outcome(job.name, status, error or detail, duration, crash)


def _finish(cursor: Any, name: str, status: str, detail: str, error: str | None) -> timedelta:
    cursor.execute(
        """
        UPDATE ts_job
        SET last_status = %(status)s, last_finish = c.t,
            last_duration = c.t - last_start, last_result = nullif(%(detail)s, ''),
            last_success = CASE WHEN %(status)s = 'failed' THEN last_success ELSE c.t END,
            failures = failures + (%(status)s = 'failed')::int,
            last_error = coalesce(%(error)s, last_error),
            last_error_at = CASE WHEN %(error)s IS NULL THEN last_error_at ELSE c.t END,
            -- On the schedule counted from the start; right away when the run overran it.
            next_run = greatest(last_start + schedule, c.t)
        FROM (SELECT clock_timestamp() AS t) c
        WHERE name = %(name)s
        RETURNING last_duration
        """,
        {"name": name, "status": status, "detail": detail, "error": error},
    )
    row = cursor.fetchone()
    duration: timedelta = row[0]
    return duration


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."
