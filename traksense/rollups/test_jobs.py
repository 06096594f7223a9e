"""The job registry, the runner (claim, status, crash detection) and the `jobs` command."""

from __future__ import annotations

import datetime as dt
import threading
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from traksense.conftest import TenantFixture
from traksense.rollups.jobs import JOBS, JOBS_BY_NAME, JobResult
from traksense.rollups.runner import Outcome, run_job
from traksense.rollups.test_jobs_support import (
    job_row,
    make_job,
    on_own_connection,
    recording,
)
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    materialized,
    new_id,
    reference,
)

DESIGN_NAMES = [
    "refresh_1m",
    "refresh_5m",
    "refresh_1h",
    "compress_1m",
    "compress_5m",
    "compress_1h",
    "compress_raw",
    "retention_raw",
    "retention_1m",
    "retention_5m",
    "retention_1h",
]


pytestmark = pytest.mark.usefixtures("clean_jobs")


def _fail() -> JobResult:
    raise RuntimeError("boom: the job broke")


def test_the_registry_holds_exactly_the_eleven_jobs_of_the_design() -> None:
    assert sorted(job.name for job in JOBS) == sorted(DESIGN_NAMES)
    schedules = {job.name: job.schedule for job in JOBS}
    assert schedules["refresh_1m"] == dt.timedelta(minutes=1)
    assert schedules["refresh_5m"] == dt.timedelta(minutes=5)
    assert schedules["refresh_1h"] == dt.timedelta(hours=1)


def test_the_registry_refreshes_finer_tiers_before_coarser_ones() -> None:
    names = [job.name for job in JOBS]
    assert names.index("refresh_1m") < names.index("refresh_5m") < names.index("refresh_1h")


def test_after_migrate_every_job_is_visible_in_the_ts_jobs_view(db: None) -> None:
    rows = on_own_connection("SELECT name, status, runs, due FROM ts_jobs ORDER BY name")
    assert sorted(r[0] for r in rows) == sorted(DESIGN_NAMES)
    assert {(r[1], r[2], r[3]) for r in rows} == {("never run", 0, True)}


def test_jobs_run_records_status_duration_and_counts(
    committed_db: None, tenant_a: TenantFixture
) -> None:
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
    device, point = new_id(), new_id()
    ingest(tenant_a.id, [(device, point, minute + dt.timedelta(seconds=s), s) for s in (1, 2, 4)])
    out = StringIO()

    call_command("jobs", "run", "refresh_1m", stdout=out)

    assert out.getvalue().startswith("refresh_1m: ok in ")
    assert "1 bucket(s) recomputed" in out.getvalue()
    row = job_row("refresh_1m")
    assert (row["status"], row["runs"], row["failures"], row["crashes"]) == ("ok", 1, 0, 0)
    assert row["last_duration"] is not None and row["last_finish"] >= row["last_start"]
    assert row["last_duration"] == row["last_finish"] - row["last_start"]
    assert row["next_run"] == row["last_start"] + dt.timedelta(minutes=1)
    assert row["last_success"] == row["last_finish"] and row["last_error"] is None
    assert row["due"] is False and row["lock_pid"] is None
    assert_equal_aggregates(materialized("1m"), reference("1m"))

    call_command("jobs", "run", "refresh_1m", stdout=StringIO())
    assert job_row("refresh_1m")["runs"] == 2


def test_a_compression_job_with_nothing_old_enough_says_so(committed_db: None) -> None:
    out = StringIO()
    call_command("jobs", "run", "compress_5m", stdout=out)
    assert "compress_5m: ok" in out.getvalue()
    row = job_row("compress_5m")
    assert (row["status"], row["runs"], row["failures"]) == ("ok", 1, 0)
    assert "no 5m partition ending before" in row["last_result"]


def test_a_job_that_reports_skipped_is_recorded_as_skipped_not_failed(committed_db: None) -> None:
    job = make_job("test_skipping", lambda: JobResult("not implemented yet", "skipped"))

    outcome = run_job(job)

    assert (outcome.status, outcome.detail) == ("skipped", "not implemented yet")
    row = job_row("test_skipping")
    assert (row["status"], row["runs"], row["failures"]) == ("skipped", 1, 0)
    assert row["last_result"] == "not implemented yet"


def test_jobs_run_of_an_unknown_job_lists_the_valid_names(db: None) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("jobs", "run", "refresh_1s")
    assert "unknown job 'refresh_1s'" in str(raised.value)
    for name in DESIGN_NAMES:
        assert name in str(raised.value)


def test_the_jobs_listing_shows_every_job_with_its_schedule_and_status(
    committed_db: None,
) -> None:
    call_command("jobs", "run", "compress_1h", stdout=StringIO())
    out = StringIO()
    call_command("jobs", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["job", "schedule", "status"]
    table = {line.split()[0]: line.split() for line in lines[1 : 1 + len(JOBS)]}
    assert list(table) == [job.name for job in JOBS]
    assert table["refresh_5m"][1:3] == ["5min", "never"]
    assert table["compress_1h"][1:3] == ["1d", "ok"]
    assert "compress_1h: no 1h partition ending before" in out.getvalue()


def test_a_failing_job_records_failed_and_its_error(
    committed_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(JOBS_BY_NAME, "test_failing", make_job("test_failing", _fail))

    with pytest.raises(CommandError, match="boom: the job broke"):
        call_command("jobs", "run", "test_failing")

    row = job_row("test_failing")
    assert (row["status"], row["runs"], row["failures"], row["crashes"]) == ("failed", 1, 1, 0)
    assert row["last_error"] == "RuntimeError: boom: the job broke"
    assert row["last_error_at"] == row["last_finish"]
    assert row["last_success"] is None and row["lock_pid"] is None


def test_a_success_after_a_failure_keeps_the_last_error_for_the_record(committed_db: None) -> None:
    flaky_calls: list[int] = []

    def flaky() -> JobResult:
        flaky_calls.append(1)
        if len(flaky_calls) == 1:
            raise ValueError("first time fails")
        return JobResult("second time works")

    job = make_job("test_flaky", flaky)
    assert run_job(job).status == "failed"
    assert run_job(job).status == "ok"
    row = job_row("test_flaky")
    assert (row["status"], row["runs"], row["failures"]) == ("ok", 2, 1)
    assert row["last_error"] == "ValueError: first time fails"
    assert row["last_result"] == "second time works"


def test_two_runners_on_the_same_job_at_once_run_it_only_once(committed_db: None) -> None:
    inside, release = threading.Event(), threading.Event()
    entered: list[str] = []

    def slow() -> JobResult:
        entered.append(threading.current_thread().name)
        inside.set()
        release.wait(timeout=60)
        return JobResult("slow job done")

    job = make_job("test_slow", slow)
    outcomes: list[Outcome] = []
    first = threading.Thread(target=lambda: outcomes.append(run_job(job, "worker-1")))
    first.start()
    try:
        assert inside.wait(timeout=60)
        row = job_row("test_slow")
        assert (row["status"], row["run_by"], row["due"]) == ("running", "worker-1", False)
        assert row["lock_pid"] is not None

        second = run_job(job, "worker-2")

        assert second.status == "busy"
        assert second.detail.startswith("already running")
        assert "worker-1" in second.detail
    finally:
        release.set()
        first.join(timeout=60)
    assert [o.status for o in outcomes] == ["ok"]
    assert len(entered) == 1
    row = job_row("test_slow")
    assert (row["status"], row["runs"], row["failures"], row["run_by"]) == ("ok", 1, 0, "worker-1")


def test_a_running_row_whose_worker_died_is_counted_as_a_crash_and_run_again(
    committed_db: None,
) -> None:
    ran: list[str] = []
    job = make_job("test_crashy", recording(ran, "x"))
    run_job(job)
    # What a worker killed mid-run leaves behind: 'running', and no lock (its session is gone).
    on_own_connection(
        "UPDATE ts_job SET last_status = 'running', run_by = 'dead-host:4242',"
        " next_run = now() + interval '1 hour' WHERE name = 'test_crashy'"
    )
    row = job_row("test_crashy")
    assert (row["status"], row["due"]) == ("crashed", True)

    outcome = run_job(job)

    assert outcome.status == "ok"
    assert outcome.crash is not None and "dead-host:4242" in outcome.crash
    assert len(ran) == 2
    row = job_row("test_crashy")
    assert (row["status"], row["runs"], row["failures"], row["crashes"]) == ("ok", 2, 1, 1)
    assert "ended without recording an outcome" in row["last_error"]


def test_a_running_row_whose_lock_is_held_is_not_a_crash(committed_db: None) -> None:
    job = make_job("test_held")
    run_job(job)
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT ts_job_try_lock('test_held')")
            assert cursor.fetchone()[0] is True
            cursor.execute("UPDATE ts_job SET last_status = 'running' WHERE name = 'test_held'")
            row = job_row("test_held")
            assert (row["status"], row["due"]) == ("running", False)

            outcome = run_job(job)

            assert outcome.status == "busy"
            assert job_row("test_held")["crashes"] == 0
    finally:
        other.close()
    # The holder's session ended without an outcome: now it is a crash.
    assert job_row("test_held")["status"] == "crashed"
