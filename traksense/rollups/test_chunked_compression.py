"""Compression of a large partition in chunks of series (COMPRESS_CHUNK_ROWS), a transaction
each: the same stored result as one transaction, every sample once, late writes between two
chunks exact, the registry counting the whole partition. Real PostgreSQL throughout."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.rollups.compression import chunk_bounds, compress_tier
from traksense.rollups.jobs import db_now
from traksense.rollups.refresh import refresh_all
from traksense.rollups.test_refresh_support import ingest, new_id, series_id

pytestmark = pytest.mark.django_db


def test_chunk_bounds_cover_every_series_id() -> None:
    assert chunk_bounds(1, 10, 3) == [(None, 5), (5, 9), (9, None)]
    assert chunk_bounds(7, 7, 4) == [(None, None)]
    assert chunk_bounds(1, 100, 1) == [(None, None)]


def raw_samples(tenant: TenantFixture) -> dict[tuple[str, str], dict[dt.datetime, float]]:
    with tenant_context(tenant.id) as cursor:
        cursor.execute(
            "SELECT device_id::text, point_id::text, ts, v_num FROM ts_measure_tenant"
            " ORDER BY series_id, ts"
        )
        out: dict[tuple[str, str], dict[dt.datetime, float]] = {}
        for device, point, ts, value in cursor.fetchall():
            key = out.setdefault((device, point), {})
            assert ts not in key, "a sample is stored twice"
            key[ts] = value
        return out


def test_a_partition_compressed_in_chunks_keeps_every_sample_once(
    tenant_a: TenantFixture, settings: Any
) -> None:
    day = db_now().replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=4)
    keys = [(new_id(), new_id()) for _ in range(12)]
    expected = {
        key: {day + dt.timedelta(minutes=m): round(i + m / 10, 1) for m in range(60)}
        for i, key in enumerate(keys)
    }
    ingest(tenant_a.id, [(d, p, ts, v) for (d, p), s in expected.items() for ts, v in s.items()])
    ids = sorted(series_id(tenant_a.id, d, p) for d, p in keys)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM ts_partition WHERE tier = 'raw' AND lo = %s", [day])
        (name,) = cursor.fetchone()
        cursor.execute(f"ANALYZE {name}")
        # The first chunk by hand, as a killed job would leave it: the first four series moved.
        cursor.execute("SELECT * FROM ts_compress_partition(%s, NULL, %s)", [name, ids[4]])
        assert cursor.fetchone()[:2] == (240, 4)
        cursor.execute("SELECT compressed_at IS NOT NULL FROM ts_partition WHERE name = %s", [name])
        assert cursor.fetchone() == (True,)
    assert raw_samples(tenant_a) == expected
    # Late writes into a moved series and into one still waiting: a duplicate, an overwrite and
    # a new sample each.
    moved, waiting = (next(k for k in keys if series_id(tenant_a.id, *k) == ids[i]) for i in (0, 8))
    late = []
    for d, p in (moved, waiting):
        late += [
            (d, p, day, expected[(d, p)][day]),
            (d, p, day + dt.timedelta(minutes=1), -5.5),
            (d, p, day + dt.timedelta(hours=3), 7.0),
        ]
        expected[(d, p)][day + dt.timedelta(minutes=1)] = -5.5
        expected[(d, p)][day + dt.timedelta(hours=3)] = 7.0
    assert ingest(tenant_a.id, late) == (
        4,
        2,
        2,
    )  # accepted (new or changed), duplicates, overwritten
    assert raw_samples(tenant_a) == expected

    refresh_all()  # (only days the 1m tier has consumed are compressed)
    settings.COMPRESS_CHUNK_ROWS = 100  # the rest in chunks of about two series
    stats = compress_tier("raw", older_than_days=3)
    assert stats.partitions == [name]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {name}")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT count(*), sum(n_rows) FROM ts_measure_z WHERE seg_start = %s", [day])
        assert cursor.fetchone() == (12, 12 * 60 + 2)
        cursor.execute("SELECT rows_before FROM ts_compression WHERE name = %s", [name])
        # The registry counts what this run moved (the series restored by the late write
        # included), and the first chunk's 240 rows moved before it only once they come back.
        assert cursor.fetchone()[0] == stats.rows
    assert stats.rows == 12 * 60 + 2 - 180
    assert raw_samples(tenant_a) == expected


def test_a_rollup_partition_compressed_in_chunks_decodes_to_the_rows_it_held(
    settings: Any,
) -> None:
    day = db_now().replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=30)
    select = (
        "SELECT series_id, bucket, float8send(v_sum), float8send(v_min), float8send(v_max), n"
        " FROM {} ORDER BY series_id, bucket"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts_ensure_partitions('1m', %s, %s)", [day, day + dt.timedelta(days=1)]
        )
        cursor.execute(
            "INSERT INTO ts_measure_1m (series_id, bucket, v_sum, v_min, v_max, n)"
            " SELECT s, %s + m * interval '1 minute', (s + m %% 7) * 2.5, s + m %% 7,"
            " s + m %% 7 + 1.5, 2 FROM generate_series(1, 20) s, generate_series(0, 99) m",
            [day],
        )
        cursor.execute(select.format("ts_measure_1m"))
        before = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cursor]
        cursor.execute("SELECT name FROM ts_partition WHERE tier = '1m' AND lo = %s", [day])
        (name,) = cursor.fetchone()
        cursor.execute(f"ANALYZE {name}")
        cursor.execute("UPDATE ts_tier SET watermark = now() WHERE tier IN ('1m', '5m')")
    settings.COMPRESS_CHUNK_ROWS = 300  # seven chunks of three series
    stats = compress_tier("1m", older_than_days=20)
    assert stats.partitions == [name] and stats.rows == 2000 and stats.segments == 20
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {name}")
        assert cursor.fetchone() == (0,)
        cursor.execute(select.format("ts_measure_1m_zrows"))
        after = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cursor]
        cursor.execute("SELECT rows_before FROM ts_compression WHERE name = %s", [name])
        assert cursor.fetchone() == (2000,)
    assert after == before
