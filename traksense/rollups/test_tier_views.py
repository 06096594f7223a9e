"""The tier views: shape, tenant isolation (fail closed), grants, real-time, and plans that
reach the primary key with partition pruning."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.rollups.refresh import refresh, refresh_all
from traksense.rollups.test_refresh_support import ingest, new_id, series_id

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)
TIER_VIEWS = ["ts_measure_1m_tenant", "ts_measure_5m_tenant", "ts_measure_1h_tenant"]
COLUMNS = [
    "bucket",
    "tenant_id",
    "device_id",
    "point_id",
    "v_avg",
    "v_min",
    "v_max",
    "n",
    "v_sum",
    "series_id",
    "segment",  # lets range queries skip compressed segments (60_tier_views.sql)
]


def two_hours(tenant: TenantFixture, device: str, point: str, value: float) -> None:
    ingest(tenant.id, [(device, point, T0 + dt.timedelta(minutes=m), value) for m in range(120)])


def count_in(view: str, tenant: TenantFixture | None, materialized_only: bool = False) -> int:
    if tenant is None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL ROLE app_user")
            cursor.execute(f"SELECT count(*) FROM {view}")
            (count,) = cursor.fetchone()
            cursor.execute("SET LOCAL ROLE NONE")
            return int(count)
    with tenant_context(tenant.id) as cursor:
        if materialized_only:
            cursor.execute("SELECT set_config('app.materialized_only', 'on', true)")
        cursor.execute(f"SELECT count(*) FROM {view}")
        count = int(cursor.fetchone()[0])
        # Transaction-local, so inside the test's transaction it would outlive this block.
        cursor.execute("SELECT set_config('app.materialized_only', '', true)")
        return count


@pytest.mark.parametrize("view", TIER_VIEWS)
def test_the_tier_view_has_the_contract_columns_and_a_security_barrier(view: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {view} LIMIT 0")
        assert [c.name for c in cursor.description] == COLUMNS
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [view])
        assert "security_barrier=true" in cursor.fetchone()[0]


@pytest.mark.parametrize("view", TIER_VIEWS)
def test_a_tenant_sees_only_its_own_buckets_and_the_outsider_none(
    view: str, tenant_a: TenantFixture, tenant_b: TenantFixture, outsider: TenantFixture
) -> None:
    d, p = new_id(), new_id()
    two_hours(tenant_a, d, p, 1.0)
    two_hours(tenant_b, d, p, 2.0)
    refresh_all()
    with tenant_context(tenant_a.id) as cursor:
        cursor.execute(f"SELECT DISTINCT tenant_id, v_avg FROM {view}")
        assert cursor.fetchall() == [(tenant_a.id, 1.0)]
    assert count_in(view, tenant_b) == count_in(view, tenant_a) > 0
    assert count_in(view, outsider) == 0


@pytest.mark.parametrize("view", TIER_VIEWS)
def test_an_unset_or_reset_tenant_sees_nothing(view: str, tenant_a: TenantFixture) -> None:
    two_hours(tenant_a, new_id(), new_id(), 1.0)
    refresh_all()
    assert count_in(view, None) == 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT ts_bind_tenant(%s)", [str(tenant_a.id)])
        cursor.execute("RESET traksense.tenant_grant")  # leaves '' behind, not NULL
        cursor.execute("SET LOCAL ROLE app_user")
        cursor.execute(f"SELECT count(*) FROM {view}")
        assert cursor.fetchone()[0] == 0
        cursor.execute("SET LOCAL ROLE NONE")


@pytest.mark.parametrize(
    "relation",
    [
        "ts_measure_1m",
        "ts_measure_5m",
        "ts_measure_1h",
        "ts_measure_1m_rt",
        "ts_measure_5m_rt",
        "ts_measure_1h_rt",
    ],
)
def test_app_user_cannot_read_rollup_tables(relation: str, tenant_a: TenantFixture) -> None:
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        tenant_context(tenant_a.id) as c,
    ):
        c.execute(f"SELECT count(*) FROM {relation}")


def test_app_user_cannot_call_the_refresh_engine(tenant_a: TenantFixture) -> None:
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        tenant_context(tenant_a.id) as c,
    ):
        c.execute("SELECT * FROM ts_refresh_chunk('1m', '-infinity', now())")


@pytest.mark.parametrize("view", TIER_VIEWS)
def test_fresh_data_is_visible_before_any_refresh_unless_materialized_only(
    view: str, tenant_a: TenantFixture
) -> None:
    d, p = new_id(), new_id()
    two_hours(tenant_a, d, p, 3.0)
    expected = {"ts_measure_1m_tenant": 120, "ts_measure_5m_tenant": 24, "ts_measure_1h_tenant": 2}
    assert count_in(view, tenant_a) == expected[view]
    assert count_in(view, tenant_a, materialized_only=True) == 0
    refresh_all()
    assert count_in(view, tenant_a, materialized_only=True) == expected[view]
    assert count_in(view, tenant_a) == expected[view]


def test_real_time_rows_match_the_materialized_ones(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    ingest(
        tenant_a.id,
        [(d, p, T0 + dt.timedelta(seconds=17 * i), float(i % 13)) for i in range(600)],
    )
    query = "SELECT bucket, v_avg, v_min, v_max, n, v_sum FROM {} ORDER BY bucket"

    def read_all() -> list[list[tuple[object, ...]]]:
        with tenant_context(tenant_a.id) as cursor:
            out = []
            for view in TIER_VIEWS:
                cursor.execute(query.format(view))
                out.append(cursor.fetchall())
            return out

    live = read_all()
    refresh_all()
    assert read_all() == live


def test_the_one_minute_view_mixes_materialized_and_fresh_buckets(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    two_hours(tenant_a, d, p, 1.0)
    refresh("1m", end=T0 + dt.timedelta(minutes=60))
    assert count_in("ts_measure_1m_tenant", tenant_a, materialized_only=True) == 60
    assert count_in("ts_measure_1m_tenant", tenant_a) == 120


@pytest.mark.parametrize("tier", ["1m", "5m", "1h"])
def test_a_series_range_query_uses_the_primary_key_of_one_partition(
    tier: str, tenant_a: TenantFixture
) -> None:
    d, p = new_id(), new_id()
    # Samples every 6 hours over 400 days: several partitions in every tier.
    ingest(tenant_a.id, [(d, p, T0 - dt.timedelta(hours=6 * i), float(i)) for i in range(1600)])
    refresh_all()
    sid = series_id(tenant_a.id, d, p)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ts_partition WHERE tier = %s", [tier])
        assert cursor.fetchone()[0] >= 4
    day = (T0 - dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    with tenant_context(tenant_a.id) as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # tiny tables: show the reachable plan
        cursor.execute(
            f"EXPLAIN SELECT * FROM ts_measure_{tier}_tenant"
            " WHERE series_id = %s AND bucket >= %s AND bucket < %s ORDER BY bucket",
            # (01:00 to 07:00 of one day: inside one partition of every tier's width)
            [sid, day.replace(hour=1), day.replace(hour=7)],
        )
        plan = "\n".join(r[0] for r in cursor.fetchall())
    materialized = [line for line in plan.splitlines() if f"ts_measure_{tier}_p" in line]
    assert len(materialized) == 1, plan  # pruned to the one partition holding the range
    assert "Index Scan" in materialized[0] and "_pkey" in materialized[0], plan
