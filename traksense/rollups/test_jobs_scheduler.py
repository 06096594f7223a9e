"""The scheduler: due jobs in order, failures do not stop it, it sleeps and stops cleanly."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import threading

import pytest

from traksense.rollups.jobs import JobResult
from traksense.rollups.runner import Outcome, sync_jobs
from traksense.rollups.scheduler import MAX_SLEEP, Scheduler
from traksense.rollups.test_jobs_support import (
    PYTHON_CLI,
    job_row,
    make_job,
    on_own_connection,
    recording,
    subprocess_env,
)

pytestmark = pytest.mark.usefixtures("clean_jobs")


def _fail() -> JobResult:
    raise RuntimeError("scheduled failure")


def test_the_scheduler_runs_due_jobs_in_order_and_keeps_going_after_a_failure(
    committed_db: None,
) -> None:
    ran: list[str] = []
    jobs = [
        make_job("test_a", recording(ran, "a")),
        make_job("test_fails", _fail),
        make_job("test_c", recording(ran, "c")),
    ]
    reported: list[Outcome] = []
    scheduler = Scheduler(jobs, report=reported.append, worker="test-scheduler")
    sync_jobs(jobs)

    outcomes = scheduler.run_due()

    assert [(o.job, o.status) for o in outcomes] == [
        ("test_a", "ok"),
        ("test_fails", "failed"),
        ("test_c", "ok"),
    ]
    assert reported == outcomes
    assert ran == ["a", "c"]
    assert job_row("test_fails")["last_error"] == "RuntimeError: scheduled failure"
    # Nothing is due again before its schedule comes round.
    assert scheduler.due() == []
    assert scheduler.run_due() == []


def test_the_scheduler_runs_a_job_again_once_its_next_run_has_come(committed_db: None) -> None:
    ran: list[str] = []
    job = make_job("test_again", recording(ran, "x"))
    scheduler = Scheduler([job], report=lambda o: None)
    sync_jobs([job])
    scheduler.run_due()
    on_own_connection("UPDATE ts_job SET next_run = now() WHERE name = 'test_again'")

    scheduler.run_due()

    assert len(ran) == 2


def test_the_scheduler_sleeps_until_the_next_due_job(committed_db: None) -> None:
    job = make_job("test_soon", schedule=dt.timedelta(seconds=10))
    later = make_job("test_later", schedule=dt.timedelta(hours=1))
    scheduler = Scheduler([job, later], report=lambda o: None)
    sync_jobs([job, later])
    assert scheduler.seconds_until_next() == 0.0

    scheduler.run_due()

    assert 0.0 < scheduler.seconds_until_next() <= 10.0
    on_own_connection("UPDATE ts_job SET next_run = now() + interval '1 day'")
    assert scheduler.seconds_until_next() == MAX_SLEEP


def test_the_scheduler_skips_a_job_another_worker_already_ran_this_period(
    committed_db: None,
) -> None:
    ran: list[str] = []
    job = make_job("test_once", recording(ran, "x"))
    sync_jobs([job])
    first, second = Scheduler([job], report=lambda o: None), Scheduler([job], report=lambda o: None)
    assert first.due() == second.due() == [job]

    first.run_due()
    # The second worker decided before the first ran; by the time it holds the job it is done.
    from traksense.rollups.runner import run_job

    assert run_job(job, only_if_due=True).status == "busy"
    assert second.run_due() == []
    assert len(ran) == 1


def test_the_scheduler_loop_stops_when_asked(committed_db: None) -> None:
    ran = threading.Event()

    def body() -> JobResult:
        ran.set()
        return JobResult("looped")

    job = make_job("test_loop", body)
    stop = threading.Event()
    scheduler = Scheduler([job], report=lambda o: None)

    def loop() -> None:
        from django.db import connection

        try:
            scheduler.run_forever(stop)
        finally:
            connection.close()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        assert ran.wait(timeout=60)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert job_row("test_loop")["status"] == "ok"


def test_the_worker_command_runs_due_jobs_and_stops_cleanly_on_sigterm(committed_db: None) -> None:
    worker = subprocess.Popen(
        [*PYTHON_CLI, "worker"],
        env=subprocess_env("ts-test-worker"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert worker.stdout is not None
        for line in worker.stdout:
            lines.append(line)
            if line.startswith("retention_1h: "):  # the last job of the first pass
                break
        worker.send_signal(signal.SIGTERM)
        rest, _ = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = "".join(lines) + rest
    assert worker.returncode == 0, output
    assert "scheduling 11 jobs" in output
    for name in ("refresh_1m", "refresh_5m", "refresh_1h", "retention_raw"):
        assert f"\n{name}: ok in " in output, output
    assert "\ncompress_1m: ok in " in output
    assert "SIGTERM, stopping after this job" in output
    assert output.rstrip().endswith("worker: stopped")
    assert job_row("refresh_1m")["status"] == "ok"
    assert job_row("refresh_1m")["lock_pid"] is None
