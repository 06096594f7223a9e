"""The compressed raw forms (migration 0008): timestamps on a regular grid kept as a first offset
and a step, decimal values as scaled integers, and every other day in the 0004 form; each decodes
bit for bit through the decoded view, the API's range read (ts_read_raw, at every kind of range
bound) and the restore. Real PostgreSQL throughout."""

from __future__ import annotations

import datetime as dt
import random
import struct
from typing import Any

import pytest
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context

pytestmark = pytest.mark.django_db

DAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # a raw partition: [DAY, DAY + 1 day)
MINUTE = dt.timedelta(minutes=1)
Sample = tuple[dt.datetime, Any]


def day_samples() -> dict[int, tuple[str, list[Sample]]]:
    """Per series id: its kind and samples, one per codec path."""
    rng = random.Random(18)
    out: dict[int, tuple[str, list[Sample]]] = {}
    # 1: a poller's minutes, one decimal (scaled, on the grid).
    out[1] = ("numeric", [(DAY + i * MINUTE, round(21 + (i % 37) / 10, 1)) for i in range(1440)])
    # 2: the same grid shifted by 30.25 s, two decimals in constant runs, from 02:00 only.
    out[2] = (
        "numeric",
        [
            (
                DAY + dt.timedelta(hours=2, seconds=30.25) + i * MINUTE,
                round(45 + (i // 50) * 0.37, 2),
            )
            for i in range(1000)
        ],
    )
    # 3: jittered times (not a grid), -0.0 and ordinary values (float8, t_us).
    times = sorted(
        {DAY + dt.timedelta(microseconds=rng.randrange(86_400_000_000)) for _ in range(900)}
    )
    out[3] = (
        "numeric",
        [(t, -0.0 if i % 7 == 0 else round(rng.uniform(0, 50), 1)) for i, t in enumerate(times)],
    )
    # 4: full-precision doubles on the grid (float8 values, t_step).
    out[4] = ("numeric", [(DAY + i * MINUTE, rng.uniform(-1e3, 1e3)) for i in range(1440)])
    # 5: four decimals spanning more than a smallint of offsets (float8 values).
    out[5] = ("numeric", [(DAY + i * MINUTE, round(i * 0.0917, 4)) for i in range(1440)])
    # 6: one sample.
    out[6] = ("numeric", [(DAY + dt.timedelta(hours=5, microseconds=7), 12.5)])
    # 7: a meter's integers near a million (scale 1), every 15 minutes.
    out[7] = ("numeric", [(DAY + i * 15 * MINUTE, float(1_000_000 + i * 3)) for i in range(96)])
    # 8: five decimals (beyond the scales): float8.
    out[8] = ("numeric", [(DAY + i * MINUTE, round(0.00001 * (i + 1), 5)) for i in range(100)])
    # 9: a boolean on the grid; 10: text at irregular times.
    out[9] = ("boolean", [(DAY + i * MINUTE, (i // 37) % 2 == 0) for i in range(1440)])
    out[10] = ("text", [(t, rng.choice(["heat", "cool", "off"])) for t, _ in out[3][1][:300]])
    return out


def as_row(ts: dt.datetime, value: Any) -> tuple[Any, ...]:
    """(ts, float8 bits, bool, text) as read back."""
    if isinstance(value, bool):
        return (ts, None, value, None)
    if isinstance(value, str):
        return (ts, None, None, value)
    return (ts, struct.pack(">d", value), None, None)


def fetch(cursor: Any, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    cursor.execute(query, params)
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cursor]


@pytest.fixture
def compressed(tenant_a: TenantFixture) -> dict[int, tuple[str, list[Sample]]]:
    data = day_samples()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ts_series (series_id, tenant_id, device_id, point_id, kind)"
            " OVERRIDING SYSTEM VALUE SELECT g, %s, gen_random_uuid(), gen_random_uuid(), k"
            " FROM unnest(%s::bigint[], %s::text[]) AS u(g, k)",
            [tenant_a.id, list(data), [kind for kind, _ in data.values()]],
        )
        cursor.execute(
            "SELECT ts_ensure_partitions('raw', %s, %s)", [DAY, DAY + dt.timedelta(days=1)]
        )
        for sid, (_, samples) in data.items():
            cursor.execute(
                "INSERT INTO ts_measure (series_id, ts, v_num, v_bool, v_text)"
                " SELECT %s, t, n, b, x FROM unnest(%s::timestamptz[], %s::float8[],"
                " %s::boolean[], %s::text[]) AS u(t, n, b, x)",
                [
                    sid,
                    [t for t, _ in samples],
                    [v if isinstance(v, float) else None for _, v in samples],
                    [v if isinstance(v, bool) else None for _, v in samples],
                    [v if isinstance(v, str) else None for _, v in samples],
                ],
            )
        cursor.execute("SELECT * FROM ts_compress_partition('ts_measure_p20260302')")
        cursor.execute("SELECT count(*) FROM ts_measure")
        assert cursor.fetchone() == (0,)
    return data


def test_each_day_takes_the_form_its_samples_allow(
    compressed: dict[int, tuple[str, list[Sample]]],
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT series_id, n_rows, t_us IS NULL, t_first, t_step, scale, k_base IS NOT NULL,"
            " v_num IS NULL, k_num IS NULL FROM ts_measure_z ORDER BY series_id"
        )
        form = {r[0]: r[1:] for r in cursor.fetchall()}
    minute_us = 60_000_000
    assert form[1] == (1440, True, 0, minute_us, 10, True, True, False)
    assert form[2] == (1000, True, 7_230_250_000, minute_us, 100, True, True, False)
    assert form[3] == (900, False, None, None, None, False, False, True)
    assert form[4] == (1440, True, 0, minute_us, None, False, False, True)
    assert form[5] == (1440, True, 0, minute_us, None, False, False, True)
    assert form[6] == (1, True, 5 * 3600 * 1_000_000 + 7, 1, 10, True, True, False)
    assert form[7] == (96, True, 0, 15 * minute_us, 1, True, True, False)
    assert form[8] == (100, True, 0, minute_us, None, False, False, True)
    assert form[9] == (1440, True, 0, minute_us, None, False, True, True)
    assert form[10] == (300, False, None, None, None, False, True, True)


def test_every_sample_decodes_bit_for_bit_in_the_view_and_the_restore(
    compressed: dict[int, tuple[str, list[Sample]]],
) -> None:
    expected = {sid: [as_row(t, v) for t, v in samples] for sid, (_, samples) in compressed.items()}
    select = "SELECT ts, float8send(v_num), v_bool, v_text FROM {} WHERE series_id = %s ORDER BY ts"
    with connection.cursor() as cursor:
        for sid, rows in expected.items():
            assert fetch(cursor, select.format("ts_measure_zrows"), [sid]) == rows, sid
        for sid in expected:
            cursor.execute("SELECT ts_decompress_segment('raw', %s, %s)", [sid, DAY])
        for sid, rows in expected.items():
            assert fetch(cursor, select.format("ts_measure"), [sid]) == rows, sid
        cursor.execute("SELECT count(*) FROM ts_measure_z")
        assert cursor.fetchone() == (0,)


def test_range_reads_cut_every_form_at_the_right_sample(
    tenant_a: TenantFixture, compressed: dict[int, tuple[str, list[Sample]]]
) -> None:
    us = dt.timedelta(microseconds=1)
    with tenant_context(tenant_a.id) as cursor:
        for sid, (_, samples) in compressed.items():
            times = [t for t, _ in samples]
            bounds = [
                DAY - MINUTE, DAY, times[0], times[0] + us, times[len(times) // 2] - us,
                times[len(times) // 2], times[-1], times[-1] + us, DAY + dt.timedelta(days=1),
            ]  # fmt: skip
            for lo in bounds:
                for end in bounds:
                    if end <= lo:
                        continue
                    for limit in (5, 100_000):
                        want = [as_row(t, v) for t, v in samples if lo <= t < end][:limit]
                        got = fetch(
                            cursor,
                            "SELECT ts, float8send(v_num), v_bool, v_text"
                            " FROM ts_read_raw(%s, %s, %s, %s)",
                            [sid, lo, end, limit],
                        )
                        assert got == want, (sid, lo, end, limit)
            cursor.execute("SELECT * FROM ts_series_span(%s)", [sid])
            assert cursor.fetchone() == (times[0], times[-1])


def test_another_tenant_reads_nothing_of_a_compressed_day(
    tenant_b: TenantFixture, compressed: dict[int, tuple[str, list[Sample]]]
) -> None:
    with tenant_context(tenant_b.id) as cursor:
        for sid in compressed:
            cursor.execute(
                "SELECT count(*) FROM ts_read_raw(%s, %s, %s, 100000)",
                [sid, DAY, DAY + dt.timedelta(days=1)],
            )
            assert cursor.fetchone() == (0,)
            cursor.execute("SELECT * FROM ts_series_span(%s)", [sid])
            assert cursor.fetchone() == (None, None)
        cursor.execute("SELECT count(*) FROM ts_measure_tenant")
        assert cursor.fetchone() == (0,)
