"""A worker killed with -9 in the middle of a large refresh: no partial result, the crash is
detected, and the next run completes the tier exactly (nothing missing, nothing counted twice)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.rollups.test_jobs_support import (
    PYTHON_CLI,
    job_row,
    on_own_connection,
    subprocess_env,
)
from traksense.rollups.test_refresh_support import materialize_until, pending, wait_for

APP = "ts-crash-test"
SERIES = 20
SECONDS_PER_SERIES = 120_000  # 2.4 M raw samples: a refresh of several seconds
WAIT = 180.0  # generous bound for slow machines; never an assertion on speed

# The 1m tier as plain SQL computes it from the raw rows. Values are integers, so sums are exact
# whatever the order of addition and the comparison can be exact too.
REFERENCE_1M = """
SELECT series_id, date_bin('1 minute', ts, timestamptz '2000-01-03 00:00:00+00'),
       sum(v_num), min(v_num), max(v_num), count(*)::integer
FROM ts_measure WHERE v_num IS NOT NULL GROUP BY 1, 2
"""
STORED_1M = "SELECT series_id, bucket, v_sum, v_min, v_max, n FROM ts_measure_1m"
# Stored rows that differ from the reference, and reference rows that are missing.
WRONG_1M = f"SELECT count(*) FROM ({STORED_1M} EXCEPT {REFERENCE_1M}) wrong"
MISSING_1M = f"SELECT count(*) FROM ({REFERENCE_1M} EXCEPT {STORED_1M}) missing"


pytestmark = pytest.mark.usefixtures("clean_jobs")


def _load_raw(tenant_id: Any) -> int:
    """Load SERIES x SECONDS_PER_SERIES samples, one a second, starting three days ago, as the
    owner, below the 1m watermark (late data: the insert trigger records the 1m invalidations,
    and the refresh works through them in chunks)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT date_trunc('minute', now() - interval '3 days')")
        start = cursor.fetchone()[0]
    materialize_until(start + dt.timedelta(seconds=SECONDS_PER_SERIES + 60))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts_ensure_partitions('raw', %s, %s)",
            [start, start + dt.timedelta(seconds=SECONDS_PER_SERIES)],
        )
        cursor.execute(
            "INSERT INTO ts_series (tenant_id, device_id, point_id, kind)"
            " SELECT %s, gen_random_uuid(), gen_random_uuid(), 'numeric'"
            " FROM generate_series(1, %s)",
            [tenant_id, SERIES],
        )
        cursor.execute(
            "INSERT INTO ts_measure (series_id, ts, v_num)"
            " SELECT s.series_id, %s + i * interval '1 second', ((i * 7 + s.series_id) %% 1000)"
            " FROM ts_series s, generate_series(0, %s - 1) AS i"
            " WHERE s.tenant_id = %s",
            [start, SECONDS_PER_SERIES, tenant_id],
        )
        return int(cursor.rowcount)


def _backends(query_like: str = "%") -> list[tuple[int, str, str]]:
    return [
        (int(r[0]), str(r[1]), str(r[2]))
        for r in on_own_connection(
            "SELECT pid, state, query FROM pg_stat_activity"
            " WHERE application_name = %s AND query LIKE %s",
            [APP, query_like],
        )
    ]


def test_a_worker_killed_mid_refresh_leaves_no_partial_result_and_the_next_run_completes_it(
    committed_db: None, tenant_a: TenantFixture
) -> None:
    loaded = _load_raw(tenant_a.id)
    assert loaded == SERIES * SECONDS_PER_SERIES
    keys = len(pending("1m"))
    assert keys == SERIES * SECONDS_PER_SERIES // 60

    worker = subprocess.Popen(
        [*PYTHON_CLI, "jobs", "run", "refresh_1m"],
        env=subprocess_env(APP),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Kill it while its refresh statement is executing.
        wait_for(
            lambda: (
                any(state == "active" for _p, state, _q in _backends("%ts_refresh_chunk%"))
                or worker.poll() is not None
            ),
            "the refresh to start",
        )
        assert worker.poll() is None, "the refresh finished before it could be killed"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=WAIT)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    out, _err = worker.communicate()
    assert worker.returncode == -signal.SIGKILL
    assert "refresh_1m: ok" not in out
    # Its backends notice the dead client once their statement ends, and roll back.
    wait_for(lambda: not _backends(), "the killed worker's backends to go away")

    # No partial result: the chunk in flight rolled back and its invalidations are pending
    # again; chunks committed before it (if the refresh had several) are complete and exact.
    with connection.cursor() as cursor:
        cursor.execute(WRONG_1M)
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT count(*) FROM ts_measure_1m")
        materialized_before = cursor.fetchone()[0]
    assert len(pending("1m")) + materialized_before == keys
    assert len(pending("1m")) > 0
    row = job_row("refresh_1m")
    assert (row["status"], row["due"], row["lock_pid"]) == ("crashed", True, None)

    out_buffer = StringIO()
    call_command("jobs", "run", "refresh_1m", stdout=out_buffer)

    assert "previous run crashed" in out_buffer.getvalue()
    assert f"{keys} bucket(s) recomputed" in out_buffer.getvalue()
    with connection.cursor() as cursor:
        cursor.execute(WRONG_1M)
        assert cursor.fetchone()[0] == 0
        cursor.execute(MISSING_1M)
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT count(*), sum(n) FROM ts_measure_1m")
        assert cursor.fetchone() == (keys, loaded)
    assert pending("1m") == []
    row = job_row("refresh_1m")
    assert (row["status"], row["runs"], row["failures"], row["crashes"]) == ("ok", 2, 1, 1)
    assert "ended without recording an outcome" in row["last_error"]
