"""Large rollup pages read in two halves at once, on the request's connection and a helper
connection sharing its snapshot (traksense/points/split.py).

The data must be committed for the helper to see it (committed_db). READ_SPLIT_BUCKETS is
lowered so that the fixture's two hours (120 buckets at 1m) are split; the helper's counter
shows that a test did read in halves.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import orjson
import psycopg
import pytest
from django.db import connection, connections
from prometheus_client import REGISTRY
from pytest_django.fixtures import Settings

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
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
    return device, point, t


def ask(hour: Hour, **params: Any) -> dict[str, Any]:
    device, point, t = hour
    return {"device_id": device, "point_id": point, **window(t, t + timedelta(hours=2)), **params}


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize(
    ("before", "after"),
    [(0, 2), (0, 4), (2, 2)],
    ids=["both halves hold rows", "the second half is empty", "the first half is empty"],
)
def test_a_page_read_in_halves_is_the_page_read_whole(
    tenant_a: TenantFixture,
    committed_hour: Hour,
    settings: Settings,
    fmt: str,
    before: int,
    after: int,
) -> None:
    t = committed_hour[2]
    span = window(t - timedelta(hours=before), t + timedelta(hours=after))

    def body(split_at: int) -> bytes:
        settings.READ_SPLIT_BUCKETS = split_at
        response = get(tenant_a, **ask(committed_hour, agg="1m", format=fmt, **span))
        assert response.status_code == 200, response
        return streamed(response).encode() if fmt == "csv" else bytes(response.content)

    whole = body(0)
    read_before = halves("helper")
    assert body(2) == whole
    assert halves("helper") == read_before + 1
    if fmt == "json":
        assert orjson.loads(whole)["data"] == expected(t, 60, 120)
    else:
        assert len(whole.splitlines()) == 121


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
    with tenant_context(tenant_b.id, reader=True):
        # Tenant B asking for tenant A's series id: both halves are empty.
        page = queries.read_json_page(
            "1m",
            queries.Series(mine.series_id, "numeric", tenant_b.id),
            t,
            t + timedelta(hours=2),
            100_000,
        )
    assert halves("helper") == before + 1
    assert b"".join(page.parts) == b""
    assert page.last is None
    assert get(tenant_b, **ask(committed_hour, agg="1m")).status_code == 404

    # Between requests the helper holds neither a tenant nor app_user's role.
    def state(conn: psycopg.Connection[Any]) -> Any:
        with conn.transaction():
            return conn.execute(
                "SELECT current_user::text, coalesce(current_setting('app.tenant_id', true), '')"
            ).fetchone()

    owner = connection.settings_dict["USER"] or "postgres"
    assert split.helper().submit(state).result() == (owner, "")


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
