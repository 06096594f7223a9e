"""Helpers shared by the job, retention and crash tests (no tests here)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from psycopg.conninfo import make_conninfo

from traksense.rollups.jobs import JOBS, Job, JobResult

PYTHON_CLI = [sys.executable, "-m", "traksense"]


def make_job(
    name: str, body: Callable[[], JobResult] | None = None, schedule: timedelta | None = None
) -> Job:
    """A job outside the registry (the registry holds exactly the ten of the design)."""
    return Job(
        name=name,
        schedule=schedule or timedelta(hours=1),
        description="test-only job",
        body=body or (lambda: JobResult("did nothing")),
    )


def recording(calls: list[str], tag: str) -> Callable[[], JobResult]:
    """A job body that appends `tag` to `calls` each time it runs."""

    def body() -> JobResult:
        calls.append(tag)
        return JobResult(f"ran {tag}")

    return body


def on_own_connection(query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own, committed at once (ts_job is written by
    the runner's own connection, outside any test transaction)."""
    conn = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with conn.cursor() as cursor:
            cursor.execute(query, params)
            return list(cursor.fetchall()) if cursor.description else []
    finally:
        conn.close()


def reset_jobs() -> None:
    """ts_job rows are committed by the runner whatever the test's transaction does: put them
    back as migrate made them."""
    on_own_connection("DELETE FROM ts_job WHERE name <> ALL(%s)", [[job.name for job in JOBS]])
    on_own_connection(
        "UPDATE ts_job SET next_run = now(), last_start = NULL, last_finish = NULL,"
        " last_duration = NULL, last_status = NULL, last_result = NULL, last_success = NULL,"
        " last_error = NULL, last_error_at = NULL, runs = 0, failures = 0, crashes = 0,"
        " run_by = NULL, run_pid = NULL"
    )


def job_row(name: str) -> dict[str, Any]:
    rows = on_own_connection("SELECT * FROM ts_jobs WHERE name = %s", [name])
    assert rows, f"no ts_jobs row for {name}"
    columns = [
        "name",
        "schedule",
        "next_run",
        "status",
        "last_start",
        "last_finish",
        "last_duration",
        "last_result",
        "last_success",
        "last_error",
        "last_error_at",
        "runs",
        "failures",
        "crashes",
        "run_by",
        "lock_pid",
        "due",
        "description",
    ]
    return dict(zip(columns, rows[0], strict=True))


def subprocess_env(application_name: str) -> dict[str, str]:
    """Environment for a `traksense` subprocess that must reach this test's database: the
    resolved host (for the embedded server, its socket directory) and the test database name."""
    connection.ensure_connection()
    info = connection.connection.info
    conninfo = make_conninfo(
        "",
        host=info.host,
        port=str(info.port),
        dbname=connection.settings_dict["NAME"],
        user=info.user,
        password=connection.settings_dict.get("PASSWORD") or None,
        application_name=application_name,
    )
    env = dict(os.environ)
    env["DATABASE_URL"] = conninfo
    env["SCHEDULER_ENABLED"] = "true"
    env.pop("TRAKSENSE_TEST_DB", None)
    return env
