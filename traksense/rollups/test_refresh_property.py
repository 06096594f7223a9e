"""Property: whatever the writes (late, out of order, duplicate, overwritten, deleted, across
bucket, hour, day and partition boundaries, several tenants, whole fleet minutes of 40 series)
and however refreshes interleave with them, after a final refresh every tier equals a reference
computed in Python from the raw rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traksense.conftest import TenantFixture
from traksense.rollups.refresh import refresh, refresh_all
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    materialized,
    reference,
)

# Sunday 23:40 → Monday 00:20 UTC: crosses minute, 5-minute and hour buckets, the raw table's day
# partitions and the 1-minute tier's weekly partitions.
BASE = dt.datetime(2026, 3, 8, 23, 40, tzinfo=dt.UTC)
SPAN = 40 * 60  # seconds
DEVICES = ["5a3c7d4e-0000-4000-8000-000000000001", "5a3c7d4e-0000-4000-8000-000000000002"]
POINTS = ["9b1e2f3a-0000-4000-8000-00000000000a", "9b1e2f3a-0000-4000-8000-00000000000b"]

# Offsets on and right next to bucket edges are likely; values are multiples of 1/4 so sums
# are exact in float8 whatever the order of addition.
instants = st.one_of(
    st.integers(0, SPAN - 1).map(lambda s: dt.timedelta(seconds=s)),
    st.integers(1, SPAN // 60 - 1).flatmap(
        lambda m: st.sampled_from([-1, 0, 1]).map(
            lambda us: dt.timedelta(minutes=m, microseconds=us)
        )
    ),
)
samples = st.tuples(
    st.integers(0, 2),  # tenant
    st.integers(0, 1),  # device
    st.integers(0, 1),  # point
    instants,
    st.integers(-4000, 4000).map(lambda x: x / 4),
)
# Fleet shape: many series, each once in a minute, the whole fleet's minute in one batch (then
# most writes land above the invalidation threshold and are not logged).
FLEET = [(f"6c2d8e5f-0000-4000-8000-{d:012d}", POINTS[p]) for d in range(20) for p in (0, 1)]
fleet_minutes = st.tuples(
    st.just("fleet"), st.integers(0, SPAN // 60 - 1), st.integers(-4000, 4000).map(lambda x: x / 4)
)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(samples, min_size=1, max_size=25)),
        fleet_minutes,
        st.tuples(st.just("delete"), st.lists(instants, min_size=1, max_size=5)),
        st.tuples(
            st.just("refresh"),
            st.sampled_from(["1m", "5m", "1h"]),
            st.one_of(st.none(), st.integers(0, SPAN // 60).map(lambda m: dt.timedelta(minutes=m))),
        ),
    ),
    min_size=1,
    max_size=12,
)


def apply(op: tuple[Any, ...], tenants: list[TenantFixture]) -> None:
    if op[0] == "write":
        by_tenant: dict[int, list[tuple[str, str, dt.datetime, float]]] = {}
        for t, d, p, offset, value in op[1]:
            by_tenant.setdefault(t, []).append((DEVICES[d], POINTS[p], BASE + offset, value))
        for t, batch in by_tenant.items():
            ingest(tenants[t].id, batch)
    elif op[0] == "fleet":
        _, minute, value = op
        at = BASE + dt.timedelta(minutes=minute)
        ingest(
            tenants[0].id,
            [
                (d, p, at + dt.timedelta(seconds=i % 60), value + i)
                for i, (d, p) in enumerate(FLEET)
            ],
        )
    elif op[0] == "delete":
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM ts_measure WHERE ts = ANY (%s)", [[BASE + o for o in op[1]]]
            )
    else:
        _, tier, end = op
        refresh(tier, end=None if end is None else BASE + end)


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_every_tier_equals_the_python_reference_after_any_writes_and_refreshes(
    ops: list[tuple[Any, ...]],
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    outsider: TenantFixture,
) -> None:
    tenants = [tenant_a, tenant_b, outsider]
    with transaction.atomic():  # each example starts from an empty store
        for op in ops:
            apply(op, tenants)
        refresh_all()
        for tier in ("1m", "5m", "1h"):
            assert_equal_aggregates(materialized(tier), reference(tier))
        transaction.set_rollback(True)
