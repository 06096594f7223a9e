"""The seed's validation section as tests: views, grants and the fail-closed tenant filter."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError, ProgrammingError

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.db.cursors import connection_params

TENANT_VIEWS = ["ts_measure_tenant", "ts_series_tenant"]
BASE_TABLES = [
    "ts_measure",
    "ts_series",
    "ts_tier",
    "ts_invalidation",
    "ts_partition",
    "tenant",
    "api_key",
]

INGEST = (
    "SELECT * FROM ts_ingest(%s::text[], %s::text[], %s::timestamptz[], %s::float8[],"
    " %s::boolean[], %s::text[])"
)


def write(tenant_id: uuid.UUID, device: str, point: str, values: list[float]) -> None:
    start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    n = len(values)
    with tenant_context(tenant_id) as cursor:
        cursor.execute(
            INGEST,
            [
                [device] * n,
                [point] * n,
                [start + dt.timedelta(seconds=i) for i in range(n)],
                values,
                [None] * n,
                [None] * n,
            ],
        )


def count_as_app_user(sql: str) -> int:
    """Run `sql` as app_user with no tenant set, in a savepoint."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL ROLE app_user")
        cursor.execute(sql)
        (count,) = cursor.fetchone()
        cursor.execute("SET LOCAL ROLE NONE")
        return int(count)


@pytest.mark.django_db
def test_the_tenant_views_exist_with_security_barrier() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relkind = 'v' AND relname = ANY(%s)",
            [TENANT_VIEWS],
        )
        found = dict(cursor.fetchall())
    assert sorted(found) == sorted(TENANT_VIEWS)
    for options in found.values():
        assert "security_barrier=true" in options


@pytest.mark.django_db
@pytest.mark.parametrize("table", BASE_TABLES)
def test_app_user_is_denied_every_base_table(table: str) -> None:
    with pytest.raises(ProgrammingError, match="permission denied"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL ROLE app_user")
            cursor.execute(f"SELECT count(*) FROM {table}")


@pytest.mark.django_db
def test_app_user_cannot_create_partitions_itself() -> None:
    with pytest.raises(ProgrammingError, match="permission denied"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL ROLE app_user")
            cursor.execute("SELECT ts_create_partitions('raw', ARRAY[now()])")


@pytest.mark.django_db
def test_views_return_nothing_when_the_tenant_is_unset(tenant_a: TenantFixture) -> None:
    write(tenant_a.id, str(uuid.uuid4()), str(uuid.uuid4()), [1.0, 2.0, 3.0])
    assert count_as_app_user("SELECT count(*) FROM ts_measure_tenant") == 0
    assert count_as_app_user("SELECT count(*) FROM ts_series_tenant") == 0


@pytest.mark.django_db
def test_views_return_nothing_and_no_error_after_reset(tenant_a: TenantFixture) -> None:
    write(tenant_a.id, str(uuid.uuid4()), str(uuid.uuid4()), [1.0])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT ts_bind_tenant(%s)", [str(tenant_a.id)])
        cursor.execute("RESET traksense.tenant_grant")  # leaves '' behind in this session
        cursor.execute("SET LOCAL ROLE app_user")
        cursor.execute(
            "SELECT current_setting('traksense.tenant_grant', true), count(*)"
            " FROM ts_measure_tenant"
        )
        setting, count = cursor.fetchone()
        cursor.execute("SET LOCAL ROLE NONE")
    assert setting == ""
    assert count == 0


@pytest.mark.django_db
def test_each_tenant_sees_only_its_own_rows(
    tenant_a: TenantFixture, tenant_b: TenantFixture, outsider: TenantFixture
) -> None:
    device, point = str(uuid.uuid4()), str(uuid.uuid4())
    write(tenant_a.id, device, point, [1.0, 2.0])
    write(tenant_b.id, device, point, [10.0, 20.0, 30.0])
    for tenant, expected in ((tenant_a, 2), (tenant_b, 3), (outsider, 0)):
        with tenant_context(tenant.id) as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT tenant_id) FROM ts_measure_tenant")
            count, tenants = cursor.fetchone()
            assert count == expected
            assert tenants == (1 if expected else 0)
            cursor.execute(
                "SELECT count(*) FROM ts_series_tenant WHERE tenant_id <> %s", [str(tenant.id)]
            )
            assert cursor.fetchone() == (0,)


@pytest.mark.django_db(transaction=True)
def test_a_reused_connection_never_carries_a_tenant_into_the_next_transaction(
    committed_db: None, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    write(tenant_a.id, str(uuid.uuid4()), str(uuid.uuid4()), [1.0, 2.0])
    with tenant_context(tenant_a.id) as cursor:
        cursor.execute("SELECT pg_backend_pid(), count(*) FROM ts_measure_tenant")
        pid_a, seen_a = cursor.fetchone()
    # Same pooled connection, next transaction: no tenant, no role left behind.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_backend_pid(), current_user,"
            " current_setting('traksense.tenant_grant', true), ts_current_tenant()"
        )
        pid, user, setting, tenant = cursor.fetchone()
    assert pid == pid_a
    assert user != "app_user"
    assert setting in (None, "")
    assert tenant is None
    with tenant_context(tenant_b.id) as cursor:
        cursor.execute("SELECT pg_backend_pid(), count(*) FROM ts_measure_tenant")
        pid_b, seen_b = cursor.fetchone()
    assert pid_b == pid_a
    assert (seen_a, seen_b) == (2, 0)


MODE = "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"


@pytest.mark.django_db(transaction=True)
def test_a_reader_transaction_reads_one_snapshot_and_writes_nothing(
    committed_db: None, tenant_a: TenantFixture
) -> None:
    with tenant_context(tenant_a.id, reader=True) as cursor:
        cursor.execute(MODE)
        assert cursor.fetchone() == ("repeatable read", "on")
        with pytest.raises(DatabaseError, match="read-only"), transaction.atomic():
            at = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
            ids = [str(uuid.uuid4())], [str(uuid.uuid4())]
            cursor.execute(INGEST, [*ids, [at], [1.0], [None], [None]])
    # The next transactions of the connection are as before: read committed, and they write.
    write(tenant_a.id, str(uuid.uuid4()), str(uuid.uuid4()), [1.0])
    with tenant_context(tenant_a.id) as cursor:
        cursor.execute(MODE)
        assert cursor.fetchone() == ("read committed", "off")


@pytest.mark.django_db(transaction=True)
def test_a_reader_transaction_on_a_connection_django_replaces_is_still_a_reader(
    committed_db: None, tenant_a: TenantFixture
) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with psycopg.connect(**connection_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            pass  # until the backend is gone and its socket closed
    connection.close_if_unusable_or_obsolete()  # what Django does at a request's start
    with tenant_context(tenant_a.id, reader=True) as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone() != (pid,)
        cursor.execute(MODE)
        assert cursor.fetchone() == ("repeatable read", "on")


@pytest.mark.django_db
def test_ingest_refuses_to_write_without_a_tenant() -> None:
    with pytest.raises(ProgrammingError, match="no tenant"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL ROLE app_user")
            cursor.execute(
                INGEST,
                [
                    [str(uuid.uuid4())],
                    [str(uuid.uuid4())],
                    [dt.datetime.now(dt.UTC)],
                    [1.0],
                    [None],
                    [None],
                ],
            )


@pytest.mark.django_db
def test_tenant_context_cannot_be_nested(tenant_a: TenantFixture, tenant_b: TenantFixture) -> None:
    with pytest.raises(RuntimeError, match="nested"), tenant_context(tenant_a.id):
        with tenant_context(tenant_b.id):
            pass


@pytest.mark.django_db
def test_tenant_context_runs_as_app_user_with_the_tenant_set(tenant_a: TenantFixture) -> None:
    with tenant_context(tenant_a.id) as cursor:
        cursor.execute("SELECT current_user::text, ts_current_tenant()")
        assert cursor.fetchone() == ("app_user", tenant_a.id)
        with pytest.raises(ProgrammingError, match="permission denied"), transaction.atomic():
            cursor.execute("SELECT count(*) FROM ts_measure")


READ_RAW = "SELECT count(*) FROM ts_read_raw(%s, '-infinity', 'infinity', 1000)"
READ_ROLLUP = "SELECT count(*) FROM ts_read_rollup_{}(%s, '-infinity', 'infinity', 1000)"


@pytest.mark.django_db
@pytest.mark.parametrize("tier", ["raw", "1m", "5m", "1h"])
def test_the_read_functions_answer_only_the_series_of_the_transactions_tenant(
    tenant_a: TenantFixture, tenant_b: TenantFixture, tier: str
) -> None:
    # They run as their owner (SECURITY DEFINER): the tenant check is theirs, not a grant's.
    device, point = str(uuid.uuid4()), str(uuid.uuid4())
    write(tenant_a.id, device, point, [1.0, 2.0, 3.0])
    write(tenant_b.id, device, point, [5.0])
    with connection.cursor() as cursor:
        cursor.execute("SELECT series_id FROM ts_series WHERE tenant_id = %s", [str(tenant_a.id)])
        (series_a,) = cursor.fetchone()

    def read(tenant: uuid.UUID | None) -> int:
        with transaction.atomic(), connection.cursor() as cursor:
            if tenant is not None:
                cursor.execute("SELECT ts_bind_tenant(%s)", [str(tenant)])
            cursor.execute("SET LOCAL ROLE app_user")
            if tier == "raw":
                cursor.execute(READ_RAW, [series_a])
            else:
                cursor.execute(READ_ROLLUP.format(tier), [series_a])
            (count,) = cursor.fetchone()
            cursor.execute("SET LOCAL ROLE NONE")
            return int(count)

    assert read(tenant_a.id) == (3 if tier == "raw" else 1)  # one bucket, on the fly
    assert read(tenant_b.id) == 0
    assert read(None) == 0


@pytest.mark.django_db
def test_series_span_answers_only_the_series_of_the_transactions_tenant(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    write(tenant_a.id, str(uuid.uuid4()), str(uuid.uuid4()), [1.0, 2.0, 3.0])
    with connection.cursor() as cursor:
        cursor.execute("SELECT series_id FROM ts_series WHERE tenant_id = %s", [str(tenant_a.id)])
        (series_a,) = cursor.fetchone()
    spans = {}
    for tenant in (tenant_a.id, tenant_b.id):
        with tenant_context(tenant) as cursor:
            cursor.execute("SELECT first_ts, last_ts FROM ts_series_span(%s)", [series_a])
            spans[tenant] = cursor.fetchone()
    start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    assert spans[tenant_a.id] == (start, start + dt.timedelta(seconds=2))
    assert spans[tenant_b.id] == (None, None)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "call",
    ["ts_series_visible(1)", "ts_segment_floor('1m', now())", "ts_raw_partition_lock(now())"],
)
def test_app_user_cannot_call_internal_functions(call: str) -> None:
    with pytest.raises(ProgrammingError, match="permission denied"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL ROLE app_user")
            cursor.execute(f"SELECT {call}")
