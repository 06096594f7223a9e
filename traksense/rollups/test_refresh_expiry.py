"""No rollup data is ever lost because its source expired (TimescaleDB deleted 276,480 one-minute
aggregates in exactly this situation). Retention is simulated as the retention job does it: drop
the source's partitions, forget them in ts_partition, move the source's expired_before."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.rollups.refresh import refresh_all
from traksense.rollups.test_refresh_support import (
    WIDTHS,
    ingest,
    materialized,
    new_id,
    pending,
    series_id,
)

pytestmark = pytest.mark.django_db

DAY = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
SOURCE = {"1m": "raw", "5m": "1m", "1h": "5m"}


def expire(tier: str) -> None:
    """Drop every partition of `tier` and mark everything before their end as expired."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, hi FROM ts_partition WHERE tier = %s", [tier])
        partitions = cursor.fetchall()
        assert partitions
        for name, _ in partitions:
            cursor.execute(f'DROP TABLE "{name}"')
        cursor.execute("DELETE FROM ts_partition WHERE tier = %s", [tier])
        cursor.execute(
            "UPDATE ts_tier SET expired_before = %s WHERE tier = %s",
            [max(hi for _, hi in partitions), tier],
        )


@pytest.mark.parametrize("tier", ["1m", "5m", "1h"])
def test_refresh_never_overwrites_or_deletes_buckets_whose_source_expired(
    tier: str, tenant_a: TenantFixture
) -> None:
    d, p = new_id(), new_id()
    # Every 10 minutes from 06:00 to 11:50, then a late sample lands in a gap at 15:30.
    ingest(
        tenant_a.id,
        [(d, p, DAY.replace(hour=6) + dt.timedelta(minutes=10 * i), 1.0) for i in range(36)],
    )
    refresh_all()
    before = materialized(tier)
    assert before

    expire(SOURCE[tier])
    sid = series_id(tenant_a.id, d, p)
    # A late sample into an existing bucket of every tier, one into a bucket that has none,
    # and an explicit invalidation of every existing bucket (as a full re-refresh would do).
    ingest(
        tenant_a.id,
        [
            (d, p, DAY.replace(hour=6, minute=0, second=30), 1000.0),
            (d, p, DAY.replace(hour=15, minute=30), 7.0),
        ],
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO ts_invalidation (tier, series_id, bucket) VALUES (%s, %s, %s)",
            [(tier, s, b) for s, b in before],
        )
    refresh_all()

    after = materialized(tier)
    assert {k: after[k] for k in before} == before  # every existing bucket intact
    new_bucket = DAY.replace(hour=15, minute=30) - (
        (DAY.replace(hour=15, minute=30) - DAY.replace(hour=0)) % WIDTHS[tier]
    )
    # The empty bucket is backfilled from what the source still has.
    assert after[(sid, new_bucket)] == (7.0, 7.0, 7.0, 1)
    assert set(after) - set(before) == {(sid, new_bucket)}
    assert pending(tier) == []


@pytest.mark.parametrize("tier", ["1m", "5m", "1h"])
def test_buckets_after_the_source_expiry_are_still_kept_exact(
    tier: str, tenant_a: TenantFixture
) -> None:
    d, p = new_id(), new_id()
    ingest(
        tenant_a.id, [(d, p, DAY.replace(hour=6) + dt.timedelta(minutes=i), 1.0) for i in range(10)]
    )
    refresh_all()
    expire(SOURCE[tier])
    later = DAY + dt.timedelta(days=200)  # past every dropped partition
    ingest(tenant_a.id, [(d, p, later, 2.0)])
    refresh_all()
    ingest(tenant_a.id, [(d, p, later, 5.0)])  # overwritten: the newer bucket follows its source
    refresh_all()
    sid = series_id(tenant_a.id, d, p)
    assert materialized(tier)[(sid, later)] == (5.0, 5.0, 5.0, 1)
