"""Compression of rollup partitions: transparent for views and the API, isolated per tenant,
exact with late data, dropped by retention, measured by stats. Real PostgreSQL throughout."""

from __future__ import annotations

import datetime as dt
import uuid
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.rollups.compression import compress_tier, tier_stats
from traksense.rollups.jobs import db_now
from traksense.rollups.refresh import refresh_all
from traksense.rollups.retention import expire
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    reference,
)

pytestmark = pytest.mark.django_db

TIERS = ("1m", "5m", "1h")
# 100 days of samples every 30 minutes: the range crosses partition bounds of every tier
# (1m: 7 days, 5m: 28 days, 1h: 91 days, all aligned on Monday 2000-01-03).
START = dt.datetime(2026, 4, 1, 0, 7, tzinfo=dt.UTC)
DAYS = 100
STEP = dt.timedelta(minutes=30)
MIDDLE = START + dt.timedelta(days=70)  # after the 1h partition bound of 2026-06-01


def samples(device: str, point: str, base: float) -> list[tuple[str, str, dt.datetime, float]]:
    count = int(dt.timedelta(days=DAYS) / STEP)
    # Values with two decimals, as sensors report them; two samples in some minutes.
    rows = [
        (device, point, START + i * STEP, round(base + (i % 97) * 0.13, 2)) for i in range(count)
    ]
    rows += [
        (device, point, START + i * STEP + dt.timedelta(seconds=20), base)
        for i in range(0, count, 7)
    ]
    return rows


def tier_rows(tenant: TenantFixture, tier: str) -> list[tuple[Any, ...]]:
    with tenant_context(tenant.id) as cursor:
        cursor.execute(
            f"SELECT bucket, device_id, point_id, v_avg, v_min, v_max, n, v_sum, series_id"
            f" FROM ts_measure_{tier}_tenant ORDER BY series_id, bucket"
        )
        return list(cursor.fetchall())


def api(
    tenant: TenantFixture, device: str, point: str, agg: str, start: dt.datetime, end: dt.datetime
) -> dict[str, Any]:
    response = tenant.client.get(
        "/data/points",
        {
            "device_id": device,
            "point_id": point,
            "agg": agg,
            "start": start.isoformat(),
            "end": end.isoformat(),
        },
    )
    assert response.status_code == 200, response.content
    body: dict[str, Any] = orjson.loads(response.content)
    return body


def compress_before(instant: dt.datetime) -> None:
    """Compress every tier's partitions that end before `instant`."""
    days = (db_now() - instant).days + 1
    for tier in TIERS:
        compress_tier(tier, older_than_days=days)


def compressed_rows(tier: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(sum(n_rows), 0) FROM ts_measure_{tier}_z")
        return int(cursor.fetchone()[0])


def uncompressed_rows(tier: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ts_measure_{tier}")
        return int(cursor.fetchone()[0])


@pytest.fixture
def loaded(tenant_a: TenantFixture, tenant_b: TenantFixture) -> tuple[str, str]:
    device, point = str(uuid.uuid4()), str(uuid.uuid4())
    ingest(tenant_a.id, samples(device, point, 20.0))
    ingest(tenant_a.id, samples(device, str(uuid.uuid4()), -3.5))
    ingest(tenant_b.id, samples(str(uuid.uuid4()), str(uuid.uuid4()), 1000.25))
    refresh_all()
    return device, point


def test_views_and_api_answer_identically_before_and_after_compression_on_every_tier(
    tenant_a: TenantFixture, loaded: tuple[str, str]
) -> None:
    device, point = loaded
    before = {tier: tier_rows(tenant_a, tier) for tier in TIERS}
    # Ranges that span compressed and uncompressed partitions.
    spans = {
        "1m": (MIDDLE - dt.timedelta(days=9), MIDDLE + dt.timedelta(days=9)),
        "5m": (START, START + dt.timedelta(days=DAYS)),
        "1h": (START, START + dt.timedelta(days=DAYS)),
    }
    api_before = {t: api(tenant_a, device, point, t, *spans[t]) for t in TIERS}

    compress_before(MIDDLE)
    for tier in TIERS:
        # Some of every tier is compressed, some is not: the boundary is inside the data.
        assert compressed_rows(tier) > 0 and uncompressed_rows(tier) > 0, tier
        assert tier_rows(tenant_a, tier) == before[tier], tier
        assert api(tenant_a, device, point, tier, *spans[tier]) == api_before[tier], tier

    compress_before(db_now())  # now everything
    for tier in TIERS:
        assert uncompressed_rows(tier) == 0, tier
        assert tier_rows(tenant_a, tier) == before[tier], tier
        assert api(tenant_a, device, point, tier, *spans[tier]) == api_before[tier], tier


def test_a_tenant_sees_only_its_own_compressed_rows_and_app_user_cannot_read_the_store(
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    outsider: TenantFixture,
    loaded: tuple[str, str],
) -> None:
    compress_before(db_now())
    for tier in TIERS:
        rows_a, rows_b = tier_rows(tenant_a, tier), tier_rows(tenant_b, tier)
        assert rows_a and rows_b and not tier_rows(outsider, tier)
        assert {r[8] for r in rows_a}.isdisjoint({r[8] for r in rows_b})
        assert all(r[4] < 100 for r in rows_a) and all(r[4] > 999 for r in rows_b)
    internal = [f"ts_measure_{t}_z" for t in TIERS] + [f"ts_measure_{t}_zrows" for t in TIERS]
    internal += ["ts_compression", "ts_compression_stats", "ts_measure_1m_z_p20260330"]
    for relation in internal:
        with (
            pytest.raises(ProgrammingError, match="permission denied"),
            tenant_context(tenant_a.id) as cursor,
        ):
            cursor.execute(f"SELECT * FROM {relation} LIMIT 1")
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        tenant_context(tenant_a.id) as cursor,
    ):
        cursor.execute("SELECT ts_decompress_segment('1m', 1, now())")


def test_late_data_into_a_compressed_range_is_aggregated_on_every_tier(
    tenant_a: TenantFixture, loaded: tuple[str, str]
) -> None:
    device, point = loaded
    compress_before(db_now())
    late_at = START + dt.timedelta(days=10, minutes=3)
    ingest(
        tenant_a.id,
        [
            (device, point, late_at, 99.5),
            (device, point, START + dt.timedelta(days=80, minutes=1), -40.0),
        ],
    )
    refresh_all()
    for tier in TIERS:
        # Owner's full view of the tier: compressed and restored rows together, each bucket once.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT series_id, bucket, v_sum, v_min, v_max, n FROM ts_measure_{tier}_rt"
            )
            rows = cursor.fetchall()
        keys = [(r[0], r[1]) for r in rows]
        assert len(keys) == len(set(keys)), f"{tier}: a bucket appears twice"
        assert_equal_aggregates(
            {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in rows}, reference(tier)
        )
    # The next compression takes the restored segments back; answers do not change.
    before = {tier: tier_rows(tenant_a, tier) for tier in TIERS}
    compress_before(db_now())
    for tier in TIERS:
        assert uncompressed_rows(tier) == 0
        assert tier_rows(tenant_a, tier) == before[tier]


def test_a_coarser_refresh_reads_a_source_that_was_compressed_after_the_late_write(
    tenant_a: TenantFixture, loaded: tuple[str, str]
) -> None:
    device, point = loaded
    compress_before(db_now())
    ingest(tenant_a.id, [(device, point, START + dt.timedelta(days=30, minutes=2), 7.25)])
    from traksense.rollups.refresh import refresh

    refresh("1m")
    compress_tier("1m", older_than_days=0)  # the 1m segment goes back before 5m reads it
    assert uncompressed_rows("1m") == 0
    refresh("5m")
    refresh("1h")
    for tier in TIERS:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT series_id, bucket, v_sum, v_min, v_max, n FROM ts_measure_{tier}_rt"
            )
            rows = {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in cursor.fetchall()}
        assert_equal_aggregates(rows, reference(tier))


def test_a_series_query_on_compressed_data_uses_the_compressed_primary_key(
    tenant_a: TenantFixture, loaded: tuple[str, str]
) -> None:
    compress_before(db_now())
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (COSTS OFF) SELECT * FROM ts_measure_1m_rt WHERE series_id = 1"
            " AND bucket >= %s AND bucket < %s",
            [START, START + dt.timedelta(days=1)],
        )
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "ts_measure_1m_z_p" in plan and "_pkey" in plan
    assert "Seq Scan on ts_measure_1m_z" not in plan


def test_retention_drops_compressed_partitions_like_uncompressed_ones(
    settings: Any, tenant_a: TenantFixture, loaded: tuple[str, str]
) -> None:
    compress_before(MIDDLE)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ts_measure_1m_z'::regclass"
        )
        compressed_partitions = int(cursor.fetchone()[0])
    assert compressed_partitions > 0
    # Keep 1m data only from MIDDLE on: every compressed 1m partition is past retention.
    settings.RETENTION_DAYS = {
        **settings.RETENTION_DAYS,
        "1m": (db_now() - MIDDLE).days,
        "5m": 0,
        "1h": 0,
    }
    stats = expire("1m")
    assert len(stats.dropped) >= compressed_partitions
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ts_measure_1m_z'::regclass"
        )
        assert int(cursor.fetchone()[0]) == 0
        cursor.execute("SELECT count(*) FROM ts_compression WHERE tier = '1m'")
        assert int(cursor.fetchone()[0]) == 0
    assert compressed_rows("1m") == 0
    assert all(r[0] >= MIDDLE - dt.timedelta(days=7) for r in tier_rows(tenant_a, "1m"))
    assert compressed_rows("5m") > 0  # other tiers keep theirs


def test_stats_report_bytes_before_and_after_per_tier(loaded: tuple[str, str]) -> None:
    compress_before(db_now())
    stats = {s.tier: s for s in tier_stats()}
    for tier in TIERS:
        s = stats[tier]
        assert s.rows == compressed_rows(tier) > 0
        assert s.bytes_before > s.bytes_after > 0
        assert s.ratio is not None and s.ratio > 1
    out = StringIO()
    call_command("stats", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["tier", "partitions"]
    assert [line.split()[0] for line in lines[1:]] == list(TIERS)


def test_compressing_a_raw_or_unknown_partition_is_refused(db: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts_ensure_partitions('raw', '2026-01-05', '2026-01-06')")
        for name, message in (("ts_measure_p20260105", "raw data"), ("nope", "unknown partition")):
            with pytest.raises(Exception, match=message), transaction.atomic():
                cursor.execute("SELECT * FROM ts_compress_partition(%s)", [name])
