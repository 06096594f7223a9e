"""GET /data/points from the rollup tiers: routing, real-time, degradation, auto."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from traksense.conftest import TenantFixture
from traksense.points.test_read import get, ingest, streamed, window
from traksense.rollups.refresh import refresh


def hour_ago() -> datetime:
    """An hour-aligned instant a day back: inside every tier, and complete for every refresh."""
    return (datetime.now(UTC) - timedelta(days=1)).replace(minute=0, second=0, microsecond=0)


def points(tenant: TenantFixture, **params: Any) -> dict[str, Any]:
    response = get(tenant, **params)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = orjson.loads(response.content)
    return body


Hour = tuple[uuid.UUID, uuid.UUID, datetime]


@pytest.fixture
def hour(tenant_a: TenantFixture) -> Hour:
    """Two hours of numeric samples, every 20 s: value i at sample i (0..359)."""
    device, point, t = uuid.uuid4(), uuid.uuid4(), hour_ago()
    ingest(tenant_a, device, point, [(t + timedelta(seconds=20 * i), float(i)) for i in range(360)])
    return device, point, t


def expected(t: datetime, width: int, count: int) -> list[dict[str, Any]]:
    """Buckets of `width` seconds over the fixture's samples (3 a minute, value = index)."""
    per = width // 20
    rows = []
    for b in range(count):
        values = [float(i) for i in range(b * per, (b + 1) * per)]
        rows.append(
            {
                "ts": (t + timedelta(seconds=width * b)).isoformat(),
                "v_avg": sum(values) / len(values),
                "v_min": values[0],
                "v_max": values[-1],
                "n": len(values),
            }
        )
    return rows


@pytest.mark.parametrize(
    ("agg", "width", "count"), [("1m", 60, 120), ("5m", 300, 24), ("1h", 3600, 2)]
)
def test_each_tier_answers_its_buckets_in_real_time_before_any_refresh(
    tenant_a: TenantFixture, hour: Hour, agg: str, width: int, count: int
) -> None:
    device, point, t = hour
    body = points(
        tenant_a, device_id=device, point_id=point, agg=agg, **window(t, t + timedelta(hours=2))
    )
    assert body["agg"] == agg
    assert body["data"] == expected(t, width, count)


def test_materialized_only_leaves_out_buckets_not_yet_refreshed(
    tenant_a: TenantFixture, hour: Hour
) -> None:
    device, point, t = hour
    w = window(t, t + timedelta(hours=2))
    ask = {"device_id": device, "point_id": point, "agg": "1m", **w}
    assert points(tenant_a, materialized_only="true", **ask)["data"] == []
    refresh("1m", t, t + timedelta(hours=2))
    assert points(tenant_a, materialized_only="true", **ask)["data"] == expected(t, 60, 120)
    assert points(tenant_a, materialized_only="false", **ask)["data"] == expected(t, 60, 120)


def test_a_window_inside_buckets_returns_the_buckets_that_start_in_it(
    tenant_a: TenantFixture, hour: Hour
) -> None:
    device, point, t = hour
    body = points(
        tenant_a,
        device_id=device,
        point_id=point,
        agg="5m",
        **window(t + timedelta(minutes=5), t + timedelta(minutes=15)),
    )
    assert [r["ts"] for r in body["data"]] == [
        (t + timedelta(minutes=m)).isoformat() for m in (5, 10)
    ]


def test_a_raw_request_30_days_back_answers_from_1m_and_says_why(tenant_a: TenantFixture) -> None:
    device, point = uuid.uuid4(), uuid.uuid4()
    start = (datetime.now(UTC) - timedelta(days=30)).replace(second=0, microsecond=0)
    ingest(
        tenant_a, device, point, [(start + timedelta(seconds=10 * i), 2.0 * i) for i in range(12)]
    )
    refresh("1m", start - timedelta(minutes=1), start + timedelta(minutes=3))
    for materialized_only in ("false", "true"):
        body = points(
            tenant_a,
            device_id=device,
            point_id=point,
            materialized_only=materialized_only,
            **window(start, start + timedelta(minutes=2)),
        )
        assert body["agg"] == "1m"
        assert (body["degraded_from"], body["degraded_to"]) == ("raw", "1m")
        assert body["reason"] == "raw data is kept 14 days; start is 30 days ago; answering from 1m"
        assert body["data"] == [
            {"ts": start.isoformat(), "v_avg": 5.0, "v_min": 0.0, "v_max": 10.0, "n": 6},
            {
                "ts": (start + timedelta(minutes=1)).isoformat(),
                "v_avg": 17.0,
                "v_min": 12.0,
                "v_max": 22.0,
                "n": 6,
            },
        ]


def test_a_degraded_csv_answer_says_so_in_its_headers(tenant_a: TenantFixture) -> None:
    device, point = uuid.uuid4(), uuid.uuid4()
    start = (datetime.now(UTC) - timedelta(days=20)).replace(second=0, microsecond=0)
    ingest(tenant_a, device, point, [(start, 1.0), (start + timedelta(seconds=30), 3.0)])
    response = get(
        tenant_a,
        device_id=device,
        point_id=point,
        format="csv",
        **window(start, start + timedelta(minutes=1)),
    )
    assert response.status_code == 200
    assert (response["X-Agg"], response["X-Degraded-From"], response["X-Degraded-To"]) == (
        "1m",
        "raw",
        "1m",
    )
    assert "14 days" in response["X-Degraded-Reason"]
    rows = list(csv.reader(io.StringIO(streamed(response))))
    assert rows[0] == ["ts", "v_avg", "v_min", "v_max", "n"]
    assert [datetime.fromisoformat(rows[1][0]), *map(float, rows[1][1:])] == [
        start,
        2.0,
        1.0,
        3.0,
        2.0,
    ]


def test_a_boolean_point_30_days_back_degrades_to_its_1m_state_rows(
    tenant_a: TenantFixture,
) -> None:
    device, flag = uuid.uuid4(), uuid.uuid4()
    start = (datetime.now(UTC) - timedelta(days=30)).replace(second=0, microsecond=0)
    ingest(tenant_a, device, flag, [(start, True)])
    body = points(
        tenant_a, device_id=device, point_id=flag, **window(start, start + timedelta(minutes=1))
    )
    assert (body["agg"], body["degraded_from"], body["degraded_to"]) == ("1m", "raw", "1m")
    assert body["data"] == [
        {"ts": start.isoformat(), "first": True, "last": True, "changes": 0, "n": 1, "true_s": 60}
    ]


def test_auto_picks_the_finest_tier_that_fits_max_points(
    tenant_a: TenantFixture, hour: Hour
) -> None:
    device, point, t = hour
    ask = {"device_id": device, "point_id": point, "agg": "auto"}
    two_hours = window(t, t + timedelta(hours=2))
    assert points(tenant_a, **ask, **two_hours)["agg"] == "1m"  # 120 buckets
    assert points(tenant_a, max_points=30, **ask, **two_hours)["agg"] == "5m"  # 24 buckets
    few = points(tenant_a, max_points=10, **ask, **two_hours)
    assert few["agg"] == "1h" and len(few["data"]) == 2
    assert "degraded_from" not in few
    three_days = window(t - timedelta(days=2), t + timedelta(days=1))
    assert points(tenant_a, **ask, **three_days)["agg"] == "5m"  # 864 buckets


def test_paging_a_rollup_walks_every_bucket_once(tenant_a: TenantFixture, hour: Hour) -> None:
    device, point, t = hour
    body = points(
        tenant_a,
        device_id=device,
        point_id=point,
        agg="1m",
        limit=50,
        **window(t, t + timedelta(hours=2)),
    )
    seen = list(body["data"])
    while "next" in body:
        response = tenant_a.client.get(body["next"])
        assert response.status_code == 200
        body = orjson.loads(response.content)
        assert body["agg"] == "1m"
        seen += body["data"]
    assert seen == expected(t, 60, 120)


def test_rollups_of_another_tenant_are_a_404(
    tenant_a: TenantFixture, outsider: TenantFixture, hour: Hour
) -> None:
    device, point, t = hour
    for agg in ("1m", "5m", "1h", "auto"):
        response = get(
            outsider,
            device_id=device,
            point_id=point,
            agg=agg,
            **window(t, t + timedelta(hours=2)),
        )
        assert response.status_code == 404
