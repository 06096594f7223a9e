"""GET /data/series (paged, filtered) and GET /data/devices against a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest

from traksense.conftest import TenantFixture
from traksense.points.test_read import get, ingest, recent


def follow(tenant: TenantFixture, path: str, name: str, **params: Any) -> list[list[Any]]:
    """Every page of a listing, following `next` to the end."""
    pages = []
    answer = orjson.loads(get(tenant, path, **params).content)
    pages.append(answer[name])
    while "next" in answer:
        response = tenant.client.get(answer["next"])
        assert response.status_code == 200
        answer = orjson.loads(response.content)
        pages.append(answer[name])
    return pages


@pytest.fixture
def fleet(tenant_a: TenantFixture) -> list[tuple[str, str, str]]:
    """Three devices of tenant A: two numeric points and one boolean each."""
    t = recent()
    made = []
    for _ in range(3):
        device = uuid.uuid4()
        for kind in ("numeric", "numeric", "boolean"):
            point = uuid.uuid4()
            ingest(tenant_a, device, point, [(t, 1.5 if kind == "numeric" else True)])
            made.append((str(device), str(point), kind))
    return sorted(made)


def test_pages_follow_device_then_point_order_and_end_without_next(
    tenant_a: TenantFixture, fleet: list[tuple[str, str, str]]
) -> None:
    pages = follow(tenant_a, "/data/series", "series", limit=4)
    assert [len(p) for p in pages] == [4, 4, 1]
    listed = [(s["device_id"], s["point_id"], s["kind"]) for p in pages for s in p]
    assert listed == fleet


def test_filters_combine_and_page_too(
    tenant_a: TenantFixture, fleet: list[tuple[str, str, str]]
) -> None:
    device = fleet[0][0]
    pages = follow(tenant_a, "/data/series", "series", device_id=device, kind="numeric", limit=1)
    listed = [(s["device_id"], s["point_id"], s["kind"]) for p in pages for s in p]
    assert listed == [f for f in fleet if f[0] == device and f[2] == "numeric"]
    assert len(pages) == 2
    booleans = follow(tenant_a, "/data/series", "series", kind="boolean")
    assert [s["kind"] for p in booleans for s in p] == ["boolean"] * 3


def test_devices_list_their_point_count_and_last_sample(
    tenant_a: TenantFixture, fleet: list[tuple[str, str, str]]
) -> None:
    later = recent() + timedelta(minutes=5)
    device, point, _kind = next(f for f in fleet if f[2] == "numeric")
    ingest(tenant_a, uuid.UUID(device), uuid.UUID(point), [(later, 2.5)])
    pages = follow(tenant_a, "/data/devices", "devices", limit=2)
    assert [len(p) for p in pages] == [2, 1]
    devices = [d for p in pages for d in p]
    assert [d["device_id"] for d in devices] == sorted({f[0] for f in fleet})
    assert all(d["points"] == 3 for d in devices)
    newest = {d["device_id"]: d["last"] for d in devices}[device]
    assert newest.startswith(later.strftime("%Y-%m-%dT%H:%M"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "0"}, "'limit' must be between 1 and 10000"),
        ({"limit": "10001"}, "'limit' must be between 1 and 10000"),
        ({"limit": "many"}, "'limit' must be an integer"),
        ({"kind": "float"}, "'kind' must be one of"),
        ({"cursor": "not-a-cursor"}, "'cursor' is not a cursor"),
        ({"cursor": ""}, "'cursor' is not a cursor"),
        ({"device_id": ""}, "'device_id' must be a UUID"),
        ({"order": "desc"}, "unknown parameter"),
    ],
)
def test_bad_paging_parameters_get_a_400_naming_them(
    tenant_a: TenantFixture, params: dict[str, str], message: str
) -> None:
    response = get(tenant_a, "/data/series", **params)
    assert response.status_code == 400
    assert message in orjson.loads(response.content)["error"]["message"]


def test_an_outsider_sees_no_series_or_device_and_a_stolen_cursor_reveals_nothing(
    tenant_a: TenantFixture, outsider: TenantFixture, fleet: list[tuple[str, str, str]]
) -> None:
    first = orjson.loads(get(tenant_a, "/data/series", limit=2).content)
    assert "next" in first
    assert orjson.loads(get(outsider, "/data/series").content) == {"series": []}
    assert orjson.loads(get(outsider, "/data/devices").content) == {"devices": []}
    # Tenant A's next-page URL, asked with the outsider's key: nothing of A.
    stolen = outsider.client.get(first["next"])
    assert stolen.status_code == 200
    assert orjson.loads(stolen.content) == {"series": []}
    device = fleet[0][0]
    assert orjson.loads(get(outsider, "/data/series", device_id=device).content) == {"series": []}
