"""Refreshes of many chunks run them on several connections at once (refresh.py): every tier
stays exact, and the watermark never passes a chunk that did not commit, even when a later chunk
of the same run committed first."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from traksense.conftest import TenantFixture
from traksense.rollups.refresh import RefreshProgress, refresh
from traksense.rollups.test_jobs_support import on_own_connection
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    materialize_until,
    materialized,
    new_id,
    pending,
    reference,
    series_id,
    wait_for,
)

BASE = dt.datetime(2026, 3, 9, 8, 0, tzinfo=dt.UTC)
WAIT = 60.0


def minute(m: int) -> dt.datetime:
    return BASE + dt.timedelta(minutes=m)


def watermark(tier: str) -> dt.datetime | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CASE WHEN isfinite(watermark) THEN watermark END FROM ts_tier WHERE tier = %s",
            [tier],
        )
        value: dt.datetime | None = cursor.fetchone()[0]
        return value


def refresh_backends(waiting_on: str) -> list[int]:
    """Backends running a chunk of a refresh and waiting for a lock of the given kind."""
    rows = on_own_connection(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE %s AND wait_event_type = 'Lock' AND wait_event = %s",
        ["%ts_refresh_chunk(%", waiting_on],
    )
    return [int(r[0]) for r in rows]


@pytest.mark.usefixtures("committed_db")
def test_chunks_refreshed_on_two_connections_are_exact_on_every_tier(
    tenant_a: TenantFixture,
) -> None:
    devices, points = [new_id(), new_id()], [new_id(), new_id()]
    ingest(
        tenant_a.id,
        [
            (d, p, minute(m) + dt.timedelta(seconds=s), float(m * 7 + s) / 4)
            for d in devices
            for p in points
            for m in range(150)
            for s in (0, 20, 59)
        ],
    )
    seen: list[RefreshProgress] = []
    stats = refresh("1m", progress=seen.append, chunk_keys=40, workers=2)
    assert stats.chunks == len(seen) > 2
    assert sorted(s.done for s in seen) == list(range(1, stats.chunks + 1))
    assert stats.buckets == 4 * 150
    assert watermark("1m") == stats.window_end
    assert refresh("5m", chunk_keys=8, workers=2).chunks > 2
    refresh("1h", workers=2)
    assert pending("1m") == pending("5m") == pending("1h") == []
    for tier in ("1m", "5m", "1h"):
        assert_equal_aggregates(materialized(tier), reference(tier))


@pytest.mark.usefixtures("committed_db")
def test_the_watermark_never_passes_a_chunk_that_did_not_commit(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    materialize_until(minute(40))  # the samples are late data below the watermark: logged
    ingest(tenant_a.id, [(d, p, minute(m) + dt.timedelta(seconds=30), float(m)) for m in range(40)])
    sid = series_id(tenant_a.id, d, p)
    # Chunks of 10 minutes. A row lock on the first invalidation holds chunk 1 in its claim.
    blocker = connections.create_connection(DEFAULT_DB_ALIAS)
    blocker.set_autocommit(False)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            refresh("1m", chunk_keys=10, workers=2)
        except BaseException as exc:  # asserted by the test thread
            errors.append(exc)
        finally:
            connection.close()

    refresher = threading.Thread(target=run)
    try:
        with blocker.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM ts_invalidation WHERE tier = '1m' AND bucket = %s FOR UPDATE",
                [minute(0)],
            )
        refresher.start()
        # Chunk 2 has done its work and waits for chunk 1 to end before touching the watermark.
        wait_for(lambda: refresh_backends("advisory"), "chunk 2 to wait for chunk 1", WAIT)
        (first,) = refresh_backends("transactionid")
        assert watermark("1m") == minute(40)
        assert materialized("1m") == {}  # chunk 2 has not committed either
        # Chunk 1 fails: chunk 2 commits its data, but the watermark stays behind chunk 1.
        on_own_connection("SELECT pg_cancel_backend(%s)", [first])
        refresher.join(WAIT)
    finally:
        blocker.rollback()
        blocker.close()
        refresher.join(WAIT)
    assert len(errors) == 1 and "canceling statement" in str(errors[0])
    assert watermark("1m") == minute(40)
    # Nothing of chunk 1, all of chunk 2; a chunk after it may have been handed out before the
    # run stopped, and is then complete too. Whatever did not commit is still pending.
    done = sorted(materialized("1m"))
    assert [key for key in done if key[1] < minute(20)] == [(sid, minute(m)) for m in range(10, 20)]
    assert pending("1m") == sorted({(sid, minute(m)) for m in range(40)} - set(done))

    stats = refresh("1m", workers=2)
    assert watermark("1m") == stats.window_end
    assert pending("1m") == []
    assert_equal_aggregates(materialized("1m"), reference("1m"))


def test_a_chunk_of_a_run_whose_coordinator_holds_no_lock_is_refused(db: None) -> None:
    with (
        pytest.raises(Exception, match="does not hold the refresh lock"),
        transaction.atomic(),  # a savepoint: the test's transaction stays usable for teardown
        connection.cursor() as c,
    ):
        c.execute("SELECT * FROM ts_refresh_chunk('1m', '-infinity', now(), pg_backend_pid(), 1)")


@pytest.mark.django_db(transaction=True)
def test_a_chunk_whose_coordinator_died_still_keeps_other_writers_of_the_tier_out(
    committed_db: None,
) -> None:
    # The run's refresh lock lives in its coordinator's transaction. Should that connection end
    # (idle timeout, terminated backend) while a chunk is in flight, the next refresh or
    # compression of the tier must wait for the chunk (the work lock), not overlap it.
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    lo, hi = minute(0), minute(60)
    coordinator = psycopg.connect(**params)
    with psycopg.connect(**params) as chunk, psycopg.connect(**params, autocommit=True) as other:
        row = coordinator.execute("SELECT ts_refresh_lock('1m')").fetchone()
        assert row is not None
        run = row[0]
        # Chunk 2 of the run: nothing before it committed, so it leaves the watermark alone.
        chunk.execute("SELECT * FROM ts_refresh_chunk('1m', %s, %s, %s, 2)", [lo, hi, run])
        other.execute("SELECT pg_terminate_backend(%s)", [run])
        wait_for(lambda: _gone(other, run), "the coordinator's backend to end")
        other.execute("SET lock_timeout = '300ms'")
        for statement in (
            "SELECT ts_refresh_lock('1m')",
            "SELECT * FROM ts_refresh_chunk('1m', %s, %s)",
        ):
            with pytest.raises(psycopg.errors.LockNotAvailable):
                other.execute(statement, [] if "lock(" in statement else [hi, minute(120)])
        chunk.commit()
        # The chunk ended: the tier is free again.
        other.execute("SELECT ts_refresh_lock('1m')")
    coordinator.close()


def _gone(conn: psycopg.Connection[tuple[object, ...]], pid: int) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return row is not None and row[0] == 0
