"""traksense jobs [list] | jobs run NAME"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from traksense.rollups.jobs import JOBS, JOBS_BY_NAME, span
from traksense.rollups.runner import run_job, sync_jobs

COLUMNS = ("job", "schedule", "status", "last start", "duration", "next run", "runs", "fail")


class Command(BaseCommand):
    help = "List the scheduled jobs and their last outcome, or run one now (`jobs run NAME`)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action")
        sub.add_parser("list", help="list the jobs (the default)")
        run = sub.add_parser("run", help="run one job now and print its outcome")
        run.add_argument("name", help=", ".join(JOBS_BY_NAME))

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("action") == "run":
            self._run(options["name"])
        else:
            self._list()

    def _run(self, name: str) -> None:
        job = JOBS_BY_NAME.get(name)
        if job is None:
            raise CommandError(f"unknown job {name!r}; valid jobs: {', '.join(JOBS_BY_NAME)}")
        outcome = run_job(job)
        if outcome.crash:
            self.stdout.write(f"{name}: previous run crashed: {outcome.crash}")
        if outcome.status == "failed":
            raise CommandError(outcome.line())
        if outcome.status == "busy":
            raise CommandError(f"{name}: {outcome.detail}")
        self.stdout.write(outcome.line())

    def _list(self) -> None:
        sync_jobs(JOBS)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, schedule, status, last_start, last_duration, next_run, runs,"
                " failures, coalesce(last_error, ''), coalesce(last_result, '')"
                " FROM ts_jobs WHERE name = ANY(%s)",
                [list(JOBS_BY_NAME)],
            )
            rows = {row[0]: row for row in cursor.fetchall()}
        table = [COLUMNS]
        notes = []
        for job in JOBS:
            name, schedule, status, start, took, next_run, runs, fails, error, result = rows[
                job.name
            ]
            table.append(
                (
                    name,
                    span(schedule),
                    status,
                    _time(start),
                    _duration(took),
                    _time(next_run),
                    str(runs),
                    str(fails),
                )
            )
            if result:
                notes.append(f"  {name}: {result}")
            if error:
                notes.append(f"  {name}: last error: {error}")
        widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
        for row in table:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if notes:
            self.stdout.write("")
            self.stdout.write("\n".join(notes))


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def _duration(value: timedelta | None) -> str:
    return f"{value.total_seconds():.3f}s" if value is not None else "-"
