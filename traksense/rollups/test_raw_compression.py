"""Raw compression (COMPRESS_RAW_AFTER_DAYS, 2 days by default): transparent for the raw view,
the API and the rollups, isolated per tenant, exact with late, duplicate and overwritten
samples, dropped by retention, measured by stats, and off with 0. Real PostgreSQL throughout."""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import subprocess
import sys
import uuid
from typing import Any

import orjson
import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.test import Client

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.rollups import jobs
from traksense.rollups.compression import compress_tier, tier_stats
from traksense.rollups.jobs import db_now
from traksense.rollups.refresh import refresh_all
from traksense.rollups.retention import expire
from traksense.rollups.test_refresh_support import (
    WIDTHS,
    assert_equal_aggregates,
    bucket_of,
    materialized,
    series_id,
)

pytestmark = pytest.mark.django_db

# Six days of samples from a Monday, one every 7 minutes and 10.5 seconds (timestamps with a
# fraction of a second, across minute and day bounds); the first days get compressed.
START = dt.datetime(2026, 3, 2, 0, 0, 10, 250_000, tzinfo=dt.UTC)
DAYS = 6
STEP = dt.timedelta(minutes=7, seconds=10, microseconds=500_000)
COMPRESSED_UNTIL = START + dt.timedelta(days=4)  # partitions ending before this are compressed

INGEST = (
    "SELECT * FROM ts_ingest(%s::text[], %s::text[], %s::timestamptz[], %s::float8[],"
    " %s::boolean[], %s::text[])"
)
# What the raw store holds, per tenant: {(device, point): {ts: value}}.
Expected = dict[tuple[str, str], dict[dt.datetime, Any]]


def write(tenant: TenantFixture, rows: list[tuple[str, str, dt.datetime, Any]]) -> tuple[int, ...]:
    """ts_ingest for a tenant; a row's value picks its kind (float, bool or str)."""

    def column(kind: type) -> list[Any]:
        return [r[3] if type(r[3]) is kind else None for r in rows]

    with tenant_context(tenant.id) as cursor:
        cursor.execute(
            INGEST,
            [
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                column(float),
                column(bool),
                column(str),
            ],
        )
        return tuple(int(v) for v in cursor.fetchone())


def series_rows(
    device: str, point: str, value: Any, days: int = DAYS
) -> list[tuple[str, str, dt.datetime, Any]]:
    count = int(dt.timedelta(days=days) / STEP)
    return [(device, point, START + i * STEP, value(i)) for i in range(count)]


def raw_view(tenant: TenantFixture) -> Expected:
    with tenant_context(tenant.id) as cursor:
        cursor.execute(
            "SELECT device_id::text, point_id::text, ts, coalesce(v_num::text, v_bool::text,"
            " v_text), v_num, v_bool, v_text FROM ts_measure_tenant ORDER BY series_id, ts"
        )
        out: Expected = {}
        for device, point, ts, _, num, flag, text in cursor.fetchall():
            value = num if num is not None else flag if flag is not None else text
            key = out.setdefault((device, point), {})
            assert ts not in key, "a sample is stored twice"
            key[ts] = value
        return out


def api_raw(tenant: TenantFixture, device: str, point: str) -> list[dict[str, Any]]:
    response = tenant.client.get(
        "/data/points",
        {
            "device_id": device,
            "point_id": point,
            "agg": "raw",
            "start": (START + dt.timedelta(days=2, hours=5)).isoformat(),
            "end": (START + dt.timedelta(days=5)).isoformat(),
        },
    )
    assert response.status_code == 200, response.content
    body = orjson.loads(response.content)
    assert "degraded_to" not in body
    data: list[dict[str, Any]] = body["data"]
    return data


def rollups_of(expected: dict[int, dict[dt.datetime, float]], tier: str) -> dict[Any, Any]:
    """Aggregates computed in Python from the samples a test wrote (by series id)."""
    groups: dict[tuple[int, dt.datetime], list[float]] = {}
    for sid, samples in expected.items():
        for ts, value in samples.items():
            groups.setdefault((sid, bucket_of(ts, WIDTHS[tier])), []).append(value)
    return {k: (math.fsum(v), min(v), max(v), len(v)) for k, v in groups.items()}


def compressed_samples() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(n_rows), 0) FROM ts_measure_z")
        return int(cursor.fetchone()[0])


@pytest.fixture
def raw_compression(settings: Any) -> None:
    """Raw compression on, raw kept forever (so the API answers old ranges from raw)."""
    settings.COMPRESS_AFTER_DAYS = {**settings.COMPRESS_AFTER_DAYS, "raw": 1}
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "raw": 0}


def compress_raw() -> None:
    stats = compress_tier("raw", older_than_days=(db_now() - COMPRESSED_UNTIL).days)
    assert stats.partitions and all(p.startswith("ts_measure_p") for p in stats.partitions)


@pytest.fixture
def loaded(
    raw_compression: None, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> dict[str, tuple[str, str]]:
    device = str(uuid.uuid4())
    points = {
        "num": (device, str(uuid.uuid4())),
        "num2": (device, str(uuid.uuid4())),
        "bool": (device, str(uuid.uuid4())),
        "text": (device, str(uuid.uuid4())),
    }
    write(tenant_a, series_rows(*points["num"], lambda i: round(20 + (i % 89) * 0.17, 2)))
    write(tenant_a, series_rows(*points["num2"], lambda i: -0.0 if i % 5 == 0 else i * 1e-7))
    write(tenant_a, series_rows(*points["bool"], lambda i: i % 3 == 0))
    write(tenant_a, series_rows(*points["text"], lambda i: f'state "{i % 4}", ok'))
    write(tenant_b, series_rows(*points["num"], lambda i: 1000.0 + i))  # same ids, other tenant
    refresh_all()
    return points


def test_raw_view_api_and_rollups_answer_identically_before_and_after_raw_compression(
    tenant_a: TenantFixture, tenant_b: TenantFixture, loaded: dict[str, tuple[str, str]]
) -> None:
    before_a, before_b = raw_view(tenant_a), raw_view(tenant_b)
    api_before = {name: api_raw(tenant_a, *key) for name, key in loaded.items()}
    catalog_before = tenant_a.client.get("/data/series").content
    tiers_before = {tier: materialized(tier) for tier in WIDTHS}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ts_measure")
        stored_before = int(cursor.fetchone()[0])

    compress_raw()
    moved = compressed_samples()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ts_measure")
        assert int(cursor.fetchone()[0]) == stored_before - moved
        cursor.execute("SELECT count(*) FROM ts_invalidation")
        assert cursor.fetchone()[0] == 0  # moving samples is not a change of data
    assert moved > stored_before // 2

    assert raw_view(tenant_a) == before_a
    assert raw_view(tenant_b) == before_b
    for name, key in loaded.items():  # the range spans compressed and uncompressed days
        assert api_raw(tenant_a, *key) == api_before[name], name
    # First and last sample times of every series, from both stores.
    assert tenant_a.client.get("/data/series").content == catalog_before
    compress_tier("raw", older_than_days=0)  # every day, the newest included
    assert tenant_a.client.get("/data/series").content == catalog_before
    assert raw_view(tenant_a) == before_a
    refresh_all()
    for tier in WIDTHS:
        assert materialized(tier) == tiers_before[tier], tier


def read_raw(tenant: TenantFixture, series: int, lo: str, end: str, limit: int) -> list[Any]:
    """ts_read_raw, the API's raw read path, as the tenant."""
    with tenant_context(tenant.id) as cursor:
        cursor.execute(
            "SELECT * FROM ts_read_raw(%s, %s::timestamptz, %s::timestamptz, %s)",
            [series, lo, end, limit],
        )
        return list(cursor.fetchall())


def test_range_reads_of_compressed_days_answer_as_before_in_order_and_per_tenant(
    tenant_a: TenantFixture, tenant_b: TenantFixture, loaded: dict[str, tuple[str, str]]
) -> None:
    rng = random.Random(5)

    def instant() -> str:
        # A sample's own time (bounds are inclusive / exclusive), a day's start, or any second.
        at = START + dt.timedelta(seconds=rng.randrange(-86_400, (DAYS + 1) * 86_400))
        return rng.choice(
            [START + rng.randrange(-9, len(series_rows("d", "p", float)) + 9) * STEP,
             at.replace(hour=0, minute=0, second=0, microsecond=0), at]
        ).isoformat()  # fmt: skip

    ranges = [("-infinity", "infinity", 100_000), ("-infinity", "infinity", 700)]
    for _ in range(30):
        lo, end = sorted((instant(), instant()))
        ranges.append((lo, end, rng.choice([1, 2, 61, 500, 100_000])))
    series = {name: series_id(tenant_a.id, *key) for name, key in loaded.items()}
    before = {(n, r): read_raw(tenant_a, s, *r) for n, s in series.items() for r in ranges}
    assert len(before[("num", ranges[0])]) == len(series_rows("d", "p", float))

    compress_raw()
    assert compressed_samples() > 0
    for (name, r), rows in before.items():
        assert read_raw(tenant_a, series[name], *r) == rows, (name, r)
    # A restored day between compressed ones (late data does that): still in order, once.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts_decompress_segment('raw', %s, %s)",
            [series["num"], START.replace(hour=0, minute=0, second=0, microsecond=0)
             + dt.timedelta(days=1)],
        )  # fmt: skip
        assert int(cursor.fetchone()[0]) > 0
    for r in ranges:
        assert read_raw(tenant_a, series["num"], *r) == before[("num", r)], r
    for sid in series.values():
        assert read_raw(tenant_b, sid, "-infinity", "infinity", 100_000) == []


def test_late_duplicate_and_overwritten_samples_in_a_compressed_day_count_once(
    tenant_a: TenantFixture, loaded: dict[str, tuple[str, str]]
) -> None:
    device, point = loaded["num"]
    compress_raw()
    stored = raw_view(tenant_a)[(device, point)]
    old = sorted(ts for ts in stored if ts < START + dt.timedelta(days=2))
    # A re-sent day: every sample a duplicate, nothing counted twice.
    resent = [(device, point, ts, stored[ts]) for ts in old[:300]]
    assert write(tenant_a, resent) == (0, 300, 0)
    # One overwrite, one new late sample, in the compressed range.
    late = START + dt.timedelta(days=1, hours=3, seconds=1)
    assert write(tenant_a, [(device, point, old[5], -42.5), (device, point, late, 99.25)]) == (
        2,
        0,
        1,
    )
    stored[old[5]] = -42.5
    stored[late] = 99.25
    assert raw_view(tenant_a)[(device, point)] == stored

    # Compressed again before the refresh: the refresh restores the source samples it reads.
    compress_raw()
    refresh_all()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT series_id FROM ts_series WHERE tenant_id = %s AND point_id = %s",
            [str(tenant_a.id), point],
        )
        sid = int(cursor.fetchone()[0])
    expected = rollups_of({sid: stored}, "1m")
    for tier in WIDTHS:
        actual = {k: v for k, v in materialized(tier).items() if k[0] == sid}
        assert_equal_aggregates(actual, rollups_of({sid: stored}, tier))
    assert expected  # the reference is not empty
    compress_raw()
    assert raw_view(tenant_a)[(device, point)] == stored


def test_a_tenant_sees_only_its_own_compressed_samples_and_not_the_store(
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    outsider: TenantFixture,
    loaded: dict[str, tuple[str, str]],
) -> None:
    compress_raw()
    seen_a, seen_b = raw_view(tenant_a), raw_view(tenant_b)
    assert len(seen_a) == 4 and len(seen_b) == 1 and raw_view(outsider) == {}
    assert all(v >= 1000 for v in seen_b[loaded["num"]].values())
    response = outsider.client.get(
        "/data/points",
        {"device_id": loaded["num"][0], "point_id": loaded["num"][1], "agg": "raw",
         "start": START.isoformat(), "end": (START + dt.timedelta(days=1)).isoformat()},
    )  # fmt: skip
    assert response.status_code == 404
    for relation in ("ts_measure_z", "ts_measure_zrows", "ts_measure_z_p20260302"):
        with (
            pytest.raises(ProgrammingError, match="permission denied"),
            tenant_context(tenant_a.id) as cursor,
        ):
            cursor.execute(f"SELECT * FROM {relation} LIMIT 1")


def test_retention_drops_compressed_raw_partitions(
    settings: Any, loaded: dict[str, tuple[str, str]]
) -> None:
    compress_raw()
    assert compressed_samples() > 0
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "raw": 14}
    expire("raw")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ts_measure_z'::regclass"
        )
        assert cursor.fetchone()[0] == 0
        cursor.execute("SELECT count(*) FROM ts_measure WHERE ts < now() - interval '15 days'")
        assert cursor.fetchone()[0] == 0
    assert compressed_samples() == 0


def test_stats_show_raw_once_compressed(loaded: dict[str, tuple[str, str]]) -> None:
    assert "raw" not in {s.tier for s in tier_stats()}
    assert 'traksense_compression_ratio{tier="raw"}' not in metrics()
    compress_raw()
    raw = {s.tier: s for s in tier_stats()}["raw"]
    assert raw.rows == compressed_samples() > 0
    assert raw.bytes_before > raw.bytes_after > 0
    assert f'traksense_compression_ratio{{tier="raw"}} {raw.ratio}' in metrics()


def metrics() -> str:
    return Client().get("/metrics").content.decode()


def test_compression_waits_for_an_ingest_into_the_same_day(
    loaded: dict[str, tuple[str, str]],
) -> None:
    # ts_ingest holds each partition it writes into with a shared lock until it commits; an
    # ingest that committed while compression ran could otherwise be truncated with the day.
    dsn = connection.get_connection_params()
    day = START.replace(hour=0, minute=0, second=0, microsecond=0)
    with psycopg.connect(**dsn, autocommit=False) as other:
        other.execute("SELECT pg_advisory_xact_lock_shared(ts_raw_partition_lock(%s), 0)", [day])
        with (
            pytest.raises(Exception, match="lock timeout"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("SET lock_timeout = '200ms'")
            cursor.execute("SELECT * FROM ts_compress_partition('ts_measure_p20260302')")


def test_raw_compression_is_on_by_default_after_two_days_and_zero_turns_it_off(
    settings: Any, db: None
) -> None:
    assert settings.COMPRESS_AFTER_DAYS["raw"] == 2
    assert "compress_raw" in {job.name for job in jobs._registry()}
    settings.COMPRESS_AFTER_DAYS = {
        t: d for t, d in settings.COMPRESS_AFTER_DAYS.items() if t != "raw"
    }
    assert "compress_raw" not in {job.name for job in jobs._registry()}
    with pytest.raises(ValueError, match="COMPRESS_RAW_AFTER_DAYS"):
        compress_tier("raw")
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from traksense import settings; print(settings.COMPRESS_AFTER_DAYS)",
        ],
        env={**os.environ, "COMPRESS_RAW_AFTER_DAYS": "0"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown == "{'1m': 7, '5m': 7, '1h': 14}\n"


def test_a_compression_age_past_raw_retention_is_refused_at_start_up() -> None:
    env = {**os.environ, "COMPRESS_RAW_AFTER_DAYS": "20", "RETENTION_RAW_DAYS": "14"}
    done = subprocess.run(
        [sys.executable, "-m", "traksense", "jobs"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert done.stderr == (
        "traksense: configuration error: COMPRESS_RAW_AFTER_DAYS (20) must be below "
        "RETENTION_RAW_DAYS (14): raw data would expire before it is compressed"
        " (COMPRESS_RAW_AFTER_DAYS=0 turns raw compression off)\n"
    )
