"""Large rollup pages read in two halves at once, on the request's connection and a helper
connection sharing its snapshot (traksense/points/split.py).

The data must be committed for the helper to see it (committed_db). READ_SPLIT_BUCKETS is
lowered so that the fixture's two hours (120 buckets at 1m) are split; the helper's counter
shows that a test did read in halves.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import orjson
import psycopg
import pytest
from django.db import connection, connections, transaction
from prometheus_client import REGISTRY
from pytest_django.fixtures import Settings

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.db.cursors import connection_params
from traksense.points import queries, split
from traksense.points.test_read import get, ingest, streamed, window
from traksense.points.test_tiers import expected, hour_ago
from traksense.rollups.refresh import refresh

Hour = tuple[uuid.UUID, uuid.UUID, Any]


def halves(reader: str) -> float:
    value = REGISTRY.get_sample_value("traksense_read_halves_total", {"reader": reader})
    return value or 0.0


@pytest.fixture
def split_small(settings: Settings) -> Settings:
    settings.READ_SPLIT_BUCKETS = 2
    return settings


@pytest.fixture
def committed_hour(committed_db: None, tenant_a: TenantFixture) -> Hour:
    """Two hours of numeric samples, every 20 s (value i at sample i), committed; the 1m tier
    refreshed over the first hour only, so a page mixes materialized and real-time buckets."""
    device, point, t = uuid.uuid4(), uuid.uuid4(), hour_ago()
    ingest(tenant_a, device, point, [(t + timedelta(seconds=20 * i), float(i)) for i in range(360)])
    refresh("1m", t, t + timedelta(hours=1))
    # The second hour's 1m partition too (the_helpers_partition), also when it is tomorrow's.
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts_ensure_partitions('1m', %s, %s)", [t, t + timedelta(hours=2)])
    return device, point, t


def ask(hour: Hour, **params: Any) -> dict[str, Any]:
    device, point, t = hour
    return {"device_id": device, "point_id": point, **window(t, t + timedelta(hours=2)), **params}


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        (timedelta(0), timedelta(hours=2), 120),
        (timedelta(0), timedelta(hours=4), 120),
        (timedelta(hours=-2), timedelta(hours=2), 120),
        (timedelta(minutes=7, seconds=13), timedelta(hours=1, minutes=53, seconds=29), 106),
    ],
    ids=[
        "both halves hold rows",
        "the second half is empty",
        "the first half is empty",
        "the middle inside a bucket",
    ],
)
def test_a_page_read_in_halves_is_the_page_read_whole(
    tenant_a: TenantFixture,
    committed_hour: Hour,
    settings: Settings,
    fmt: str,
    start: timedelta,
    end: timedelta,
    count: int,
) -> None:
    t = committed_hour[2]
    span = window(t + start, t + end)

    def body(split_at: int) -> bytes:
        settings.READ_SPLIT_BUCKETS = split_at
        response = get(tenant_a, **ask(committed_hour, agg="1m", format=fmt, **span))
        assert response.status_code == 200, response
        return streamed(response).encode() if fmt == "csv" else bytes(response.content)

    whole = body(0)
    read_before = halves("helper")
    assert body(2) == whole
    assert halves("helper") == read_before + 1
    first = max(0, -(-start // timedelta(minutes=1)))  # the first bucket starting in range
    if fmt == "json":
        assert orjson.loads(whole)["data"] == expected(t, 60, 120)[first : first + count]
    else:
        assert len(whole.splitlines()) == count + 1


def test_the_halves_carry_materialized_only(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    before = halves("helper")
    response = get(tenant_a, **ask(committed_hour, agg="1m", materialized_only="true"))
    assert halves("helper") == before + 1
    # Only the refreshed first hour: the helper's half (the second hour) is real-time only.
    assert orjson.loads(response.content)["data"] == expected(committed_hour[2], 60, 60)


def test_both_halves_read_the_requests_snapshot(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    """A sample committed after the request's snapshot, in the helper's half, is not in the
    answer: the helper imported the snapshot instead of taking its own."""
    device, point, t = committed_hour
    late = t + timedelta(hours=1, minutes=30, seconds=5)

    def write_late() -> None:
        try:
            ingest(tenant_a, device, point, [(late, 1000.0)])
        finally:
            connections.close_all()

    before = halves("helper")
    with tenant_context(tenant_a.id, reader=True):
        series = queries.find_series(tenant_a.id, device, point)
        assert series is not None  # the snapshot is taken here, at the transaction's first query
        writer = threading.Thread(target=write_late)
        writer.start()
        writer.join()
        page = queries.read_json_page("1m", series, t, t + timedelta(hours=2), 100_000)
    assert halves("helper") == before + 1
    rows = orjson.loads(b"[" + b"".join(page.parts) + b"]")
    assert rows == expected(t, 60, 120)
    # ...and it is there for the next request.
    again = orjson.loads(get(tenant_a, **ask(committed_hour, agg="1m")).content)["data"]
    assert [r["v_max"] for r in again if r["ts"] == (late - timedelta(seconds=5)).isoformat()] == [
        1000.0
    ]


def test_the_helper_reads_for_the_requests_tenant_only(
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    committed_hour: Hour,
    split_small: Settings,
) -> None:
    device, point, t = committed_hour
    with tenant_context(tenant_a.id, reader=True):
        mine = queries.find_series(tenant_a.id, device, point)
    assert mine is not None
    before = halves("helper")
    # Tenant A's page in halves, then tenant B's: the helper's tenant is the request's each time.
    with tenant_context(tenant_a.id, reader=True):
        page = queries.read_json_page("1m", mine, t, t + timedelta(hours=2), 100_000)
    assert orjson.loads(b"[" + b"".join(page.parts) + b"]") == expected(t, 60, 120)
    with tenant_context(tenant_b.id, reader=True):
        # Tenant B asking for tenant A's series id: both halves are empty.
        page = queries.read_json_page(
            "1m",
            queries.Series(mine.series_id, "numeric"),
            t,
            t + timedelta(hours=2),
            100_000,
        )
    assert halves("helper") == before + 2
    assert b"".join(page.parts) == b""
    assert page.last is None
    assert get(tenant_b, **ask(committed_hour, agg="1m")).status_code == 404

    # Between requests the helper holds neither a tenant nor app_user's role.
    def state(conn: psycopg.Connection[Any]) -> Any:
        with conn.transaction():
            return conn.execute("SELECT current_user::text, ts_current_tenant()").fetchone()

    owner = connection.settings_dict["USER"] or "postgres"
    assert split.helper().submit(state, "default").result() == (owner, None)


def test_a_failed_helper_leaves_the_answer_whole_and_reconnects(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    def data() -> list[dict[str, Any]]:
        response = get(tenant_a, **ask(committed_hour, agg="1m"))
        assert response.status_code == 200
        rows: list[dict[str, Any]] = orjson.loads(response.content)["data"]
        return rows

    assert data() == expected(committed_hour[2], 60, 120)  # the helper is connected now
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            [split.APPLICATION_NAME],
        )
        assert cur.fetchone() == (1,)
    failed, served = halves("request"), halves("helper")
    assert data() == expected(committed_hour[2], 60, 120)
    assert (halves("request"), halves("helper")) == (failed + 1, served)
    assert data() == expected(committed_hour[2], 60, 120)
    assert halves("helper") == served + 1


def test_a_transaction_that_wrote_reads_its_page_whole(
    tenant_a: TenantFixture, split_small: Settings
) -> None:
    """In a test's transaction (django_db: nothing committed) the helper could not see the rows:
    the page is read whole, and holds them."""
    device, point, t = uuid.uuid4(), uuid.uuid4(), hour_ago()
    ingest(tenant_a, device, point, [(t + timedelta(seconds=20 * i), float(i)) for i in range(360)])
    before = halves("helper"), halves("request")
    response = get(tenant_a, **ask((device, point, t), agg="1m"))
    assert orjson.loads(response.content)["data"] == expected(t, 60, 120)
    assert (halves("helper"), halves("request")) == before


def page_rows(page: queries.Page) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = orjson.loads(b"[" + b"".join(page.parts) + b"]")
    return rows


def read_here(tenant: TenantFixture, hour: Hour) -> queries.Page:
    """The 1m page of the fixture's two hours, read in the current transaction."""
    device, point, t = hour
    series = queries.find_series(tenant.id, device, point)
    assert series is not None
    return queries.read_json_page("1m", series, t, t + timedelta(hours=2), 100_000)


@contextmanager
def repeatable_read() -> Iterator[None]:
    """Transactions the connection begins in the block are REPEATABLE READ (and may write)."""
    connection.ensure_connection()
    raw = connection.connection
    raw.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        yield
    finally:
        raw.isolation_level = None


def test_a_read_committed_transaction_reads_its_page_whole(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    """Its statements each take a snapshot of their own: there is none to share."""
    before = halves("helper"), halves("request")
    with tenant_context(tenant_a.id):
        page = read_here(tenant_a, committed_hour)
    assert page_rows(page) == expected(committed_hour[2], 60, 120)
    assert (halves("helper"), halves("request")) == before


def test_a_repeatable_read_transaction_that_wrote_reads_its_page_whole(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    """The helper would not see what the transaction wrote."""
    device, point, t = committed_hour
    late = t + timedelta(hours=1, minutes=30, seconds=5)
    before = halves("helper"), halves("request")
    with repeatable_read(), tenant_context(tenant_a.id) as cursor:
        cursor.execute(
            "SELECT * FROM ts_ingest(%s::text[], %s::text[], %s::timestamptz[], %s::float8[],"
            " %s::boolean[], %s::text[])",
            [[str(device)], [str(point)], [late], [1000.0], [None], [None]],
        )
        rows = page_rows(read_here(tenant_a, committed_hour))
    assert [r["v_max"] for r in rows if r["ts"] == (late - timedelta(seconds=5)).isoformat()] == [
        1000.0
    ]
    assert (halves("helper"), halves("request")) == before


def test_a_reader_nested_in_a_repeatable_read_transaction_reads_its_page_whole(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    """A nested reader runs in a subtransaction (a savepoint), which cannot export a snapshot."""
    before = halves("helper"), halves("request")
    with repeatable_read(), transaction.atomic(), tenant_context(tenant_a.id, reader=True):
        page = read_here(tenant_a, committed_hour)
    assert page_rows(page) == expected(committed_hour[2], 60, 120)
    assert (halves("helper"), halves("request")) == before


def owner_connection() -> psycopg.Connection[Any]:
    return psycopg.connect(**connection_params(), autocommit=True)


class QueuedLock:
    """Another session asking for an ACCESS EXCLUSIVE lock on a partition (as DDL would) and
    waiting, queued behind the share lock the request's transaction holds; every later share
    lock on the partition queues behind it. It gets the lock once that transaction ends."""

    def __init__(self, partition: str) -> None:
        self.partition = partition
        self.session = owner_connection()
        self.thread = threading.Thread(target=self._lock)

    def _lock(self) -> None:
        with self.session.transaction():
            self.session.execute(f'LOCK TABLE "{self.partition}" IN ACCESS EXCLUSIVE MODE')

    def queue(self) -> None:
        """Ask for the lock; return once the request for it waits."""
        self.thread.start()
        with owner_connection() as watcher:
            waiting = None
            while not waiting:
                waiting = watcher.execute(
                    "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted",
                    [self.session.info.backend_pid],
                ).fetchone()

    def finish(self) -> None:
        """After the request's transaction: the lock is granted, then released."""
        if self.thread.ident is not None:  # started
            self.thread.join()
        self.session.close()


def the_helpers_partition(hour: Hour) -> str:
    """The 1m partition of the bucket the helper's half reads (t + 90 min)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM ts_partition WHERE tier = '1m' AND lo <= %s AND %s < hi",
            [hour[2] + timedelta(minutes=90)] * 2,
        )
        (name,) = cursor.fetchone()
    return str(name)


def read_with_a_lock_queued(tenant: TenantFixture, hour: Hour) -> queries.Page:
    """The fixture's page, read in halves by a reader transaction that first reads one bucket of
    the helper's half (a one-bucket page is read whole), so that it holds a share lock on that
    bucket's partition, behind which a QueuedLock then waits."""
    device, point, t = hour
    lock = QueuedLock(the_helpers_partition(hour))
    try:
        with tenant_context(tenant.id, reader=True):
            series = queries.find_series(tenant.id, device, point)
            assert series is not None
            at = t + timedelta(minutes=90)
            queries.read_json_page("1m", series, at, at + timedelta(minutes=1), 100_000)
            lock.queue()
            return read_here(tenant, hour)
    finally:
        lock.finish()


def test_a_helper_queued_behind_a_lock_gives_way_to_the_request(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    """Request -> helper (in Python) -> DDL's lock -> request: a cycle PostgreSQL cannot see.
    The helper's lock_timeout breaks it: the request reads the second half itself, where it
    holds its locks already, and keeps its helper."""
    kept = split.helper()
    before = halves("request")
    page = read_with_a_lock_queued(tenant_a, committed_hour)
    assert page_rows(page) == expected(committed_hour[2], 60, 120)
    assert halves("request") == before + 1
    assert split.helper() is kept


def test_a_helper_that_does_not_answer_in_time_is_cancelled_and_replaced(
    tenant_a: TenantFixture,
    committed_hour: Hour,
    split_small: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(split, "LOCK_TIMEOUT", "1min")  # the helper waits for the lock...
    monkeypatch.setattr(split, "HELPER_WAIT_SECONDS", 0.2)  # ...longer than the request waits
    stuck = split.helper()
    before = halves("request")
    page = read_with_a_lock_queued(tenant_a, committed_hour)
    assert page_rows(page) == expected(committed_hour[2], 60, 120)
    assert halves("request") == before + 1
    assert split.helper() is not stuck


def test_raw_pages_and_ranges_that_could_be_cut_are_read_whole(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    def read(**params: Any) -> Any:
        return orjson.loads(get(tenant_a, **ask(committed_hour, **params)).content)

    before = halves("helper")
    assert len(read(agg="raw")["data"]) == 360
    cut = read(agg="1m", limit=100)
    assert len(cut["data"]) == 100 and "next" in cut
    assert halves("helper") == before


def test_the_helper_renders_timestamps_in_the_requests_time_zone(
    tenant_a: TenantFixture, committed_hour: Hour, split_small: Settings
) -> None:
    """A server whose default time zone is not UTC: the helper renders in Django's (UTC)."""
    split.close_helper()  # the next helper connects with the database's new default
    with connection.cursor() as cur:
        cur.execute("SELECT current_database()")
        (name,) = cur.fetchone()
        cur.execute(f"ALTER DATABASE \"{name}\" SET TimeZone = 'America/Sao_Paulo'")
    try:
        before = halves("helper")
        response = get(tenant_a, **ask(committed_hour, agg="1m"))
        assert halves("helper") == before + 1
        assert orjson.loads(response.content)["data"] == expected(committed_hour[2], 60, 120)
    finally:
        with connection.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" RESET TimeZone')
        split.close_helper()
