"""The scheduler loop: run due jobs in registry order, sleep until the next one is due.

Any number of schedulers may run (a `worker` and the thread inside `serve`, on one host or
several): ts_job is the coordination point and the runner's lock keeps two of them off the same
job. "Due" is decided by the database (the ts_jobs view): next_run has passed, or the last run
died without an outcome; a job another worker holds right now is not due.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

from traksense.rollups.jobs import JOBS, Job
from traksense.rollups.runner import Outcome, run_job, sync_jobs, worker_id

log = logging.getLogger(__name__)

# Longest sleep between looks at ts_job: picks up schedules changed by other workers and runs
# crashed by others' deaths without waiting for our own next due time.
MAX_SLEEP = 30.0
# After the database was unreachable, wait this long before trying again.
ERROR_BACKOFF = 5.0


def log_outcome(outcome: Outcome) -> None:
    level = logging.WARNING if outcome.status == "failed" else logging.INFO
    log.log(level, "%s", outcome.line())


class Scheduler:
    def __init__(
        self,
        jobs: Sequence[Job] = JOBS,
        report: Callable[[Outcome], None] = log_outcome,
        worker: str | None = None,
    ) -> None:
        self.jobs = tuple(jobs)
        self.by_name = {job.name: job for job in self.jobs}
        self.report = report
        self.worker = worker or worker_id()

    def due(self) -> list[Job]:
        """Jobs due now, in registry order."""
        rows = self._query("SELECT name FROM ts_jobs WHERE due AND name = ANY(%s)")
        names = {row[0] for row in rows}
        return [job for job in self.jobs if job.name in names]

    def seconds_until_next(self) -> float:
        rows = self._query(
            "SELECT extract(epoch FROM min(next_run) - now()) FROM ts_jobs"
            " WHERE name = ANY(%s) AND lock_pid IS NULL"
        )
        wait = rows[0][0] if rows else None
        if wait is None:
            return MAX_SLEEP
        return min(max(float(str(wait)), 0.0), MAX_SLEEP)

    def run_due(self, stop: threading.Event | None = None) -> list[Outcome]:
        """One pass: run every due job once, in order; a failing job does not stop the pass."""
        outcomes = []
        for job in self.due():
            if stop is not None and stop.is_set():
                break
            outcome = run_job(job, self.worker, only_if_due=True)
            if outcome.status == "busy":
                # Not a run: another worker has it, or just had it.
                log.debug("%s", outcome.line())
                continue
            self.report(outcome)
            outcomes.append(outcome)
        return outcomes

    def run_forever(self, stop: threading.Event) -> None:
        """Loop until `stop` is set; the job running when it is set finishes first."""
        synced = False
        while not stop.is_set():
            # Like Django does around a request: a long-lived process must drop connections
            # that broke or aged out instead of failing on them forever.
            close_old_connections()
            try:
                if not synced:
                    sync_jobs(self.jobs)
                    synced = True
                self.run_due(stop)
                wait = self.seconds_until_next()
            except Exception:
                # The database is down or restarting: keep the loop alive, try again later.
                log.exception("scheduler pass failed; retrying in %.0f s", ERROR_BACKOFF)
                connections[DEFAULT_DB_ALIAS].close()
                wait = ERROR_BACKOFF
            stop.wait(wait)

    def _query(self, query: str) -> list[tuple[object, ...]]:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(query, [list(self.by_name)])
            return list(cursor.fetchall())
