"""Helpers shared by the rollup tests (no tests here): write as a tenant, read tiers as the owner,
and an independent reference computed in Python from the raw rows."""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from collections.abc import Callable, Sequence

from django.db import connection

from traksense.db.context import tenant_context

ORIGIN = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)
WIDTHS = {
    "1m": dt.timedelta(minutes=1),
    "5m": dt.timedelta(minutes=5),
    "1h": dt.timedelta(hours=1),
}
INGEST = (
    "SELECT accepted, duplicates, overwritten FROM ts_ingest(%s::text[], %s::text[],"
    " %s::timestamptz[], %s::float8[], %s::boolean[], %s::text[])"
)

Sample = tuple[str, str, dt.datetime, float]
Key = tuple[int, dt.datetime]
Agg = tuple[float, float, float, int]  # v_sum, v_min, v_max, n


def ingest(tenant_id: uuid.UUID, samples: Sequence[Sample]) -> tuple[int, int, int]:
    """Write numeric samples (device, point, ts, value) for a tenant through ts_ingest."""
    with tenant_context(tenant_id) as cursor:
        cursor.execute(
            INGEST,
            [
                [s[0] for s in samples],
                [s[1] for s in samples],
                [s[2] for s in samples],
                [s[3] for s in samples],
                [None] * len(samples),
                [None] * len(samples),
            ],
        )
        accepted, duplicates, overwritten = cursor.fetchone()
        return int(accepted), int(duplicates), int(overwritten)


def bucket_of(ts: dt.datetime, width: dt.timedelta) -> dt.datetime:
    return ts - (ts - ORIGIN) % width


def reference(tier: str) -> dict[Key, Agg]:
    """The tier computed in Python from the raw numeric rows, independently of the SQL."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT series_id, ts, v_num FROM ts_measure WHERE v_num IS NOT NULL")
        rows = cursor.fetchall()
    width = WIDTHS[tier]
    groups: dict[Key, list[float]] = {}
    for series_id, ts, value in rows:
        groups.setdefault((series_id, bucket_of(ts, width)), []).append(value)
    return {key: (math.fsum(vs), min(vs), max(vs), len(vs)) for key, vs in groups.items()}


def materialized(tier: str) -> dict[Key, Agg]:
    """The tier's stored rows, read as the owner."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT series_id, bucket, v_sum, v_min, v_max, n FROM ts_measure_{tier}")
        return {(r[0], r[1]): (r[2], r[3], r[4], r[5]) for r in cursor.fetchall()}


def assert_equal_aggregates(actual: dict[Key, Agg], expected: dict[Key, Agg]) -> None:
    """Same buckets; n, min and max exact; averages to 1e-9 relative."""
    assert sorted(actual) == sorted(expected)
    for key, (v_sum, v_min, v_max, n) in expected.items():
        a_sum, a_min, a_max, a_n = actual[key]
        assert (a_n, a_min, a_max) == (n, v_min, v_max), key
        assert math.isclose(a_sum / a_n, v_sum / n, rel_tol=1e-9, abs_tol=1e-12), key


def series_id(tenant_id: uuid.UUID, device: str, point: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT series_id FROM ts_series"
            " WHERE tenant_id = %s AND device_id = %s AND point_id = %s",
            [tenant_id, device, point],
        )
        return int(cursor.fetchone()[0])


def pending(tier: str) -> list[Key]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT series_id, bucket FROM ts_invalidation WHERE tier = %s ORDER BY 1, 2",
            [tier],
        )
        return [(int(s), b) for s, b in cursor.fetchall()]


def new_id() -> str:
    return str(uuid.uuid4())


def wait_for(condition: Callable[[], object], what: str, timeout: float = 180.0) -> None:
    """Poll `condition` until it is true; a generous bound, never an assertion on speed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def materialize_until(at: dt.datetime, tier: str = "1m") -> None:
    """Refresh `tier` up to `at` before the test writes: its watermark and invalidation threshold
    are then there, so writes below `at` are logged late data, recomputed key by key, rather
    than new data above the threshold, materialized by a range scan."""
    from traksense.rollups.refresh import refresh

    refresh(tier, end=at)
