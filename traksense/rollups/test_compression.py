"""Compression of rollup partitions: transparent for views and the API, isolated per tenant,
exact with late data, dropped by retention, measured by stats. Real PostgreSQL throughout."""

from __future__ import annotations

import datetime as dt
import random
import struct
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
    WIDTHS,
    assert_equal_aggregates,
    ingest,
    reference,
    series_id,
)

pytestmark = pytest.mark.django_db

TIERS = ("1m", "5m", "1h")
# 100 days of samples every 30 minutes: the range crosses partition bounds of every tier
# (1m: 1 day, 5m: 7 days, 1h: 28 days, all aligned on Monday 2000-01-03).
START = dt.datetime(2026, 4, 1, 0, 7, tzinfo=dt.UTC)
DAYS = 100
STEP = dt.timedelta(minutes=30)
MIDDLE = START + dt.timedelta(days=70)  # after the 1h partition bound of 2026-05-18


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
    internal += ["ts_compression", "ts_compression_stats", "ts_measure_1m_z_p20260402"]
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


# A sensor reporting every minute (dense: every bucket of every tier is present, so compression
# stores contiguous segments), or with outages of a minute to a few hours (segments with gaps,
# `offs`). The read functions decode both slice by slice (65_read.sql).
DENSE_START = dt.datetime(2026, 5, 6, 3, 17, tzinfo=dt.UTC)  # inside a 1m partition
DENSE_DAYS = 15


def read_fn(
    tenant: TenantFixture, tier: str, series: int, lo: str, end: str, limit: int
) -> list[tuple[Any, ...]]:
    with tenant_context(tenant.id) as cursor:
        cursor.execute(
            f"SELECT * FROM ts_read_rollup_{tier}(%s, %s::timestamptz, %s::timestamptz, %s)",
            [series, lo, end, limit],
        )
        return list(cursor.fetchall())


def minutes_reported(rng: random.Random, gaps: bool) -> list[int]:
    minutes, i = [], 0
    while i < DENSE_DAYS * 1440:
        if gaps and rng.random() < 0.02:
            i += rng.choice([1, 2, 7, 60, 61, 300])  # an outage
            continue
        minutes.append(i)
        i += 1
    return minutes


@pytest.mark.parametrize("gaps", [False, True], ids=["dense", "gaps"])
def test_range_reads_of_compressed_segments_answer_as_before_in_order_and_per_tenant(
    tenant_a: TenantFixture, tenant_b: TenantFixture, gaps: bool
) -> None:
    rng = random.Random(11)
    device, point = str(uuid.uuid4()), str(uuid.uuid4())
    minutes = minutes_reported(rng, gaps)
    ingest(
        tenant_a.id,
        [
            (device, point, DENSE_START + dt.timedelta(minutes=i, seconds=rng.randrange(60)), v)
            for i in minutes
            for v in [round(20 + rng.random() * 5, 2) if i % 50 else rng.random()]
        ],
    )
    refresh_all()
    series = series_id(tenant_a.id, device, point)

    def instant() -> str:  # on a minute, or anywhere inside one
        at = DENSE_START + dt.timedelta(minutes=rng.randrange(-1440, (DENSE_DAYS + 1) * 1440))
        return (at + dt.timedelta(seconds=rng.choice([0, 0, 1, 59.5]))).isoformat()

    ranges = [("-infinity", "infinity", 100_000), ("-infinity", "infinity", 1_000)]
    for _ in range(40):
        lo, end = sorted((instant(), instant()))
        ranges.append((lo, end, rng.choice([1, 2, 61, 1_440, 100_000])))
    ranges += [(lo, "infinity", 500) for lo, _, _ in ranges[2:6]]
    ranges += [("-infinity", end, 100_000) for _, end, _ in ranges[2:6]]
    before = {(t, r): read_fn(tenant_a, t, series, *r) for t in TIERS for r in ranges}
    assert len(before[("1m", ranges[0])]) == len(minutes)

    compress_before(db_now())
    assert uncompressed_rows("1m") == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FILTER (WHERE offs IS NULL), count(*) FROM ts_measure_1m_z")
        contiguous, segments = cursor.fetchone()
    assert segments > 2 and contiguous == (0 if gaps else segments)
    for (tier, r), rows in before.items():
        assert read_fn(tenant_a, tier, series, *r) == rows, (tier, r)
    # A restored segment between compressed ones (late data does that): still in order.
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts_decompress_segment('1m', %s, '2026-05-11 00:00+00')", [series])
    assert 0 < uncompressed_rows("1m") < len(minutes)
    for r in ranges:
        assert read_fn(tenant_a, "1m", series, *r) == before[("1m", r)], r
    for tier in TIERS:
        assert read_fn(tenant_b, tier, series, "-infinity", "infinity", 100_000) == []


@pytest.mark.parametrize("tier", ["1m", "5m"])
def test_range_reads_of_compressed_rows_past_the_watermark_follow_the_view(
    tenant_a: TenantFixture, loaded: tuple[str, str], tier: str
) -> None:
    # A refresh far behind compression (only by hand here): compressed rows at or past the
    # watermark are the view's to answer, and the read function agrees with it. Without raw
    # samples the view's real-time part is empty, so the two would differ if the function
    # decoded those rows itself.
    compress_before(db_now())
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ts_tier SET watermark = %s WHERE tier = %s", [MIDDLE, tier])
        cursor.execute("SELECT series_id FROM ts_series WHERE tenant_id = %s", [tenant_a.id])
        series = [row[0] for row in cursor.fetchall()]
        cursor.execute("DELETE FROM ts_measure WHERE series_id = ANY(%s)", [series])
        # The delete is only to empty the view's real-time part: forget the invalidations it
        # logged, or read-your-writes would (rightly) answer the recompute of the emptied raw.
        cursor.execute("DELETE FROM ts_invalidation WHERE series_id = ANY(%s)", [series])
    lo, end = MIDDLE - dt.timedelta(days=9), MIDDLE + dt.timedelta(days=9)
    for s in series:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT bucket, v_sum / n, v_min, v_max, n FROM ts_measure_{tier}_rt"
                " WHERE series_id = %s AND bucket >= %s AND bucket < %s ORDER BY bucket",
                [s, lo, end],
            )
            view = cursor.fetchall()
        assert view and view[-1][0] < MIDDLE
        assert read_fn(tenant_a, tier, s, lo.isoformat(), end.isoformat(), 100_000) == view


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


def test_compressing_an_unknown_partition_is_refused(db: None) -> None:
    with (
        pytest.raises(Exception, match="unknown partition"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT * FROM ts_compress_partition('nope')")


CODEC_START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday: inside one partition per tier


def codec_rows(tier: str) -> dict[int, list[tuple[float, float, float, int]]]:
    """Per series id, rows (v_sum, v_min, v_max, n) that exercise every path of the codec."""
    rng = random.Random(tier)
    out: dict[int, list[tuple[float, float, float, int]]] = {}
    count = 300
    for d in range(5):  # 1..5: sensor values with d decimals; v_sum the float sum of samples
        scale, k = 10**d, rng.randrange(-5000, 5000)
        rows = []
        for _ in range(count):
            samples = []
            for _ in range(60):
                k += rng.randrange(-3, 4)
                samples.append(k / scale)
            total = 0.0
            for v in samples:  # left to right, as sum(float8)
                total += v
            rows.append((total, min(samples), max(samples), len(samples)))
        out[1 + d] = rows
    # 6: full-precision random doubles (no scale round-trips).
    out[6] = [
        (rng.uniform(-1e6, 1e6), rng.uniform(-1, 0), rng.uniform(0, 1), 7) for _ in range(count)
    ]
    # 7: negative zero, huge and tiny magnitudes, subnormals, beside ordinary values.
    odd = [-0.0, 0.0, 1e300, -1.7e308, 5e-324, 2.2e-308, 1e-300, 2.0**60, 123.45, -0.01]
    out[7] = [(odd[i % 10], odd[(i + 3) % 10], odd[(i + 7) % 10], 1 + i % 3) for i in range(count)]
    # 8: two-decimal min/max, v_sum a random double or -0.0 (the sum falls back, min/max not).
    out[8] = [
        (-0.0 if i % 5 == 0 else rng.uniform(0, 1e4), (2000 + i) / 100, (2050 + i) / 100, 60)
        for i in range(count)
    ]
    # 9: four decimals spanning more than a smallint of offsets; 10: n = 1, v_sum = v_min.
    out[9] = [(i * 7.0001, i * 7.0001, i * 7.0001 + 0.0001, 1) for i in range(count)]
    out[10] = [((3000 - i) / 10, (3000 - i) / 10, (3000 - i) / 10, 1) for i in range(count)]
    # 11: as 3 (two decimals), with a random v_sum in every tenth row: float8 exceptions.
    out[11] = [
        (rng.uniform(-1e9, 1e9), mi, ma, n) if i % 10 == 3 else (s, mi, ma, n)
        for i, (s, mi, ma, n) in enumerate(out[3])
    ]
    # 12: v_max - v_min beyond one byte of hundredths in some rows (the smallint path).
    out[12] = [
        (s, mi, ma + (7.5 if i % 4 == 0 else 0), n) for i, (s, mi, ma, n) in enumerate(out[3])
    ]
    out[12] = [(s, mi, round(ma, 2), n) for s, mi, ma, n in out[12]]
    # 13: two decimals crossing zero: -0.0 (as Python's round() makes it) in some v_min, v_max.
    out[13] = [
        (s, -0.0 if i % 9 == 0 else mi, -0.0 if i % 9 == 0 else ma, n)
        for i, (s, mi, ma, n) in enumerate(out[3])
    ]
    # 14: n * v_min beyond 2^63 in units (the sum's integers would overflow): v_sum stays float8.
    out[14] = [(3.5 + i, 4e12 + i, 4e12 + i, 2_000_000_000) for i in range(count)]
    return out


def bits(cursor: Any, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    cursor.execute(query, params)
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cursor]


@pytest.mark.parametrize("tier", TIERS)
def test_the_codec_decodes_every_value_bit_for_bit(tenant_a: TenantFixture, tier: str) -> None:
    """Each tier's form (float8 at 1m; scaled at 1h, and at 5m for series of at most 60 samples
    a row, as all of these: ts_z_scaled_up_to), through the views'
    decoder, the read functions' (which decode a float8-form segment on their own) and back
    into the uncompressed tier."""
    width, data = WIDTHS[tier], codec_rows(tier)
    select = (
        "SELECT series_id, bucket, float8send(v_sum), float8send(v_min), float8send(v_max), n"
        " FROM {} WHERE series_id = ANY(%s) ORDER BY series_id, bucket"
    )
    # What the read functions answer: the average, as v_sum / n of the stored row.
    read = (
        "SELECT ts, float8send(v_avg), float8send(v_min), float8send(v_max), n"
        f" FROM ts_read_rollup_{tier}(%s, %s::timestamptz, %s::timestamptz, %s)"
    )
    ids = list(data)
    with connection.cursor() as cursor:
        end = CODEC_START + 300 * width
        cursor.execute("SELECT ts_ensure_partitions(%s, %s, %s)", [tier, CODEC_START, end])
        for sid, rows in data.items():
            for i, (v_sum, v_min, v_max, n) in enumerate(rows):
                cursor.execute(
                    f"INSERT INTO ts_measure_{tier} (series_id, bucket, v_sum, v_min, v_max, n)"
                    " VALUES (%s, %s, %s::float8, %s::float8, %s::float8, %s)",
                    [sid, CODEC_START + i * width, repr(v_sum), repr(v_min), repr(v_max), n],
                )
        before = bits(cursor, select.format(f"ts_measure_{tier}"), [ids])
        assert len(before) == 300 * len(ids)
        # (Series 7's subnormal sums, which ingest refuses, would underflow in v_sum / n.)
        readable = [s for s in ids if s != 7]
        read_before = bits(
            cursor,
            "SELECT series_id, bucket, float8send(v_sum / n), float8send(v_min),"
            f" float8send(v_max), n FROM ts_measure_{tier} WHERE series_id = ANY(%s)"
            " ORDER BY series_id, bucket",
            [readable],
        )
        cursor.execute(
            "INSERT INTO ts_series (series_id, tenant_id, device_id, point_id, kind)"
            " OVERRIDING SYSTEM VALUE SELECT g, %s, gen_random_uuid(), gen_random_uuid(), 'numeric'"
            " FROM unnest(%s::bigint[]) g",
            [tenant_a.id, ids],
        )
        # The stored values are the Python doubles, bit for bit (-0.0 included).
        assert before[0][2:5] == tuple(struct.pack(">d", v) for v in data[1][0][:3])
        cursor.execute(
            "SELECT name FROM ts_partition WHERE tier = %s AND lo <= %s AND hi > %s",
            [tier, CODEC_START, CODEC_START],
        )
        (partition,) = cursor.fetchone()
        cursor.execute("SELECT * FROM ts_compress_partition(%s)", [partition])
        assert uncompressed_rows(tier) == 0
        cursor.execute(
            f"SELECT series_id, round(log(scale))::int, k_sum IS NOT NULL, v_sum IS NOT NULL,"
            f" k_max_w IS NOT NULL FROM ts_measure_{tier}_z ORDER BY series_id"
        )
        form = {r[0]: r[1:] for r in cursor.fetchall()}
        if tier in ("5m", "1h"):
            # Decimal values take the scaled form, v_sum too despite its rounding error; the
            # others keep the float8 form (the whole segment, or single v_sum elements as
            # exceptions). (Sums near zero, in lower binades than most, may be exceptions.)
            assert {s: (form[s][:2], form[s][3]) for s in range(1, 6)} == {
                1 + d: ((d, True), False) for d in range(5)
            }
            assert form[6] == form[7] == form[9] == (None, False, True, False)
            assert form[8] == (2, False, True, False) and form[10] == (1, True, False, False)
            # (14's rows hold 2e9 samples: at 5m, beyond ts_z_scaled_up_to, the float8 form.)
            assert (
                form[14][:2] == ((0, False) if tier == "1h" else (None, False))
                and form[11] == (2, True, True, False)
                and form[12][:2] + form[12][3:] == (2, True, True)
            )
            cursor.execute(
                f"SELECT round(log(scale))::int, v_min IS NOT NULL FROM ts_measure_{tier}_z"
                " WHERE series_id = 13"
            )
            assert cursor.fetchone() == (2, True)  # scaled, with float8 exceptions
        else:
            # Every segment in the float8 form: no scale, no scaled sum.
            assert set(form.values()) == {(None, False, True, False)}
        # n stored once where every row has the same (all but series 7).
        cursor.execute(
            f"SELECT series_id, cardinality(n) FROM ts_measure_{tier}_z ORDER BY series_id"
        )
        assert dict(cursor.fetchall()) == {s: 300 if s == 7 else 1 for s in ids}

        assert bits(cursor, select.format(f"ts_measure_{tier}_zrows"), [ids]) == before
        # The rows count as refreshed (the read functions decode segments below the watermark).
        cursor.execute("UPDATE ts_tier SET watermark = %s WHERE tier = %s", [end, tier])
        with tenant_context(tenant_a.id) as reader:
            decoded = [
                (s, *row)
                for s in readable
                for row in bits(reader, read, [s, "-infinity", "infinity", 100_000])
            ]
        assert decoded == read_before
        # Part of the segment, then cut by the limit: the decode statements slice every array
        # (elements 8 to 250, then 8 to 57), every value still bit for bit.
        part_lo, part_end = CODEC_START + 7 * width, CODEC_START + 250 * width
        for limit in (100_000, 50):
            with tenant_context(tenant_a.id) as reader:
                part = [
                    (s, *row)
                    for s in readable
                    for row in bits(reader, read, [s, part_lo, part_end, limit])
                ]
            expected = [
                r
                for s in readable
                for r in [r for r in read_before if r[0] == s and part_lo <= r[1] < part_end][
                    :limit
                ]
            ]
            assert len(expected) == len(readable) * min(243, limit)
            assert part == expected
        cursor.execute(
            "SELECT ts_decompress_for(%s, %s, %s)",
            [tier, ids, [CODEC_START] * len(ids)],
        )
        assert cursor.fetchone()[0] == len(before)
        assert compressed_rows(tier) == 0
        assert bits(cursor, select.format(f"ts_measure_{tier}"), [ids]) == before
