"""POST /data/query against a real PostgreSQL: each element is GET /data/points' answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest

from traksense.conftest import TenantFixture
from traksense.db.context import BY_TENANT_SQL, RUNTIME_ROLE
from traksense.db.cursors import connection_params
from traksense.points import queries, split
from traksense.points.test_read import get, ingest, recent, window
from traksense.points.test_split import halves
from traksense.rollups.test_counters import mark


def post(tenant: TenantFixture, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return tenant.client.post("/data/query", raw, content_type="application/json")


def results(tenant: TenantFixture, body: Any) -> list[dict[str, Any]]:
    response = post(tenant, body)
    assert response.status_code == 200, response.content
    answer: list[dict[str, Any]] = orjson.loads(response.content)["results"]
    return answer


Pair = tuple[uuid.UUID, uuid.UUID]


@pytest.fixture
def device(tenant_a: TenantFixture) -> tuple[uuid.UUID, list[uuid.UUID], datetime]:
    """One device with three numeric points, ten samples each, one a minute."""
    device_id, points, t = uuid.uuid4(), [uuid.uuid4() for _ in range(3)], recent()
    for n, point in enumerate(points):
        rows = [(t + timedelta(minutes=i), float(100 * n + i)) for i in range(10)]
        ingest(tenant_a, device_id, point, rows)
    return device_id, points, t


def test_each_element_is_what_get_answers_for_its_series_in_request_order(
    tenant_a: TenantFixture, device: tuple[uuid.UUID, list[uuid.UUID], datetime]
) -> None:
    device_id, points, t = device
    w = window(t, t + timedelta(hours=1))
    for agg in ("raw", "1m", "5m", "auto"):
        order = [points[2], points[0], points[1]]
        body = {
            **w,
            "agg": agg,
            "series": [{"device_id": str(device_id), "point_id": str(p)} for p in order],
        }
        got = results(tenant_a, body)
        expected = [
            orjson.loads(get(tenant_a, device_id=device_id, point_id=p, agg=agg, **w).content)
            for p in order
        ]
        assert got == expected
        assert [e["point_id"] for e in got] == [str(p) for p in order]


def test_raw_values_come_back_per_series(
    tenant_a: TenantFixture, device: tuple[uuid.UUID, list[uuid.UUID], datetime]
) -> None:
    device_id, points, t = device
    body = {
        **window(t, t + timedelta(minutes=3)),
        "series": [{"device_id": str(device_id), "point_id": str(p)} for p in points],
    }
    got = results(tenant_a, body)
    assert [[row["v"] for row in e["data"]] for e in got] == [
        [0.0, 1.0, 2.0],
        [100.0, 101.0, 102.0],
        [200.0, 201.0, 202.0],
    ]


def test_an_unknown_series_and_another_tenants_get_the_same_not_found_element(
    tenant_a: TenantFixture,
    outsider: TenantFixture,
    device: tuple[uuid.UUID, list[uuid.UUID], datetime],
) -> None:
    device_id, points, t = device
    unknown = uuid.uuid4()
    body = {
        **window(t, t + timedelta(hours=1)),
        "series": [
            {"device_id": str(device_id), "point_id": str(points[0])},
            {"device_id": str(unknown), "point_id": str(points[0])},
        ],
    }
    theirs, nowhere = results(outsider, body)
    assert theirs["error"]["code"] == nowhere["error"]["code"] == "not_found"
    assert set(theirs) == {"device_id", "point_id", "error"}
    assert orjson.dumps(theirs) == orjson.dumps(nowhere).replace(
        str(unknown).encode(), str(device_id).encode()
    )
    # The owner gets data for its series and the same not_found for the unknown one.
    mine, missing = results(tenant_a, body)
    assert len(mine["data"]) == 10
    assert missing == nowhere


def test_the_outsider_sees_nothing_of_a_series_the_owner_just_read(
    tenant_a: TenantFixture,
    outsider: TenantFixture,
    device: tuple[uuid.UUID, list[uuid.UUID], datetime],
) -> None:
    # find_many fills the per-process cache for tenant A: it must never answer the outsider.
    device_id, points, t = device
    body = {
        **window(t, t + timedelta(hours=1)),
        "agg": "1m",
        "series": [{"device_id": str(device_id), "point_id": str(p)} for p in points],
    }
    assert all("data" in e for e in results(tenant_a, body))
    assert all(e["error"]["code"] == "not_found" for e in results(outsider, body))


def test_a_series_asked_twice_is_answered_at_both_places(
    tenant_a: TenantFixture, device: tuple[uuid.UUID, list[uuid.UUID], datetime]
) -> None:
    device_id, points, t = device
    one = {"device_id": str(device_id), "point_id": str(points[0])}
    other = {"device_id": str(device_id), "point_id": str(points[1])}
    got = results(tenant_a, {**window(t, t + timedelta(hours=1)), "series": [one, other, one]})
    assert got[0] == got[2]
    assert got[1]["point_id"] == str(points[1])


def test_each_cut_element_has_its_own_next_which_get_follows(
    tenant_a: TenantFixture, device: tuple[uuid.UUID, list[uuid.UUID], datetime]
) -> None:
    device_id, points, t = device
    body = {
        **window(t, t + timedelta(hours=1)),
        "limit": 4,
        "series": [{"device_id": str(device_id), "point_id": str(p)} for p in points[:2]],
    }
    first, second = results(tenant_a, body)
    assert [r["v"] for r in first["data"]] == [0.0, 1.0, 2.0, 3.0]
    assert first["next"].startswith("/data/points?")
    follow = orjson.loads(tenant_a.client.get(first["next"]).content)
    assert [r["v"] for r in follow["data"]] == [4.0, 5.0, 6.0, 7.0]
    follow = orjson.loads(tenant_a.client.get(second["next"]).content)
    assert [r["v"] for r in follow["data"]] == [104.0, 105.0, 106.0, 107.0]


def test_each_series_answers_the_rows_of_its_kind(
    tenant_a: TenantFixture, device: tuple[uuid.UUID, list[uuid.UUID], datetime]
) -> None:
    device_id, points, t = device
    flag = uuid.uuid4()
    ingest(tenant_a, device_id, flag, [(t, True)])
    body = {
        **window(t, t + timedelta(hours=1)),
        "agg": "1m",
        "series": [
            {"device_id": str(device_id), "point_id": str(flag)},
            {"device_id": str(device_id), "point_id": str(points[0])},
        ],
    }
    boolean, numeric = results(tenant_a, body)
    assert boolean["data"][0]["true_s"] == 60 and boolean["data"][0]["first"] is True
    assert numeric["agg"] == "1m" and len(numeric["data"]) == 10
    assert "v_avg" in numeric["data"][0]


def test_materialized_only_holds_for_every_series(
    tenant_a: TenantFixture, device: tuple[uuid.UUID, list[uuid.UUID], datetime]
) -> None:
    # Nothing is refreshed yet: the 1m answers come only from the real-time region.
    device_id, points, t = device
    body = {
        **window(t, t + timedelta(hours=1)),
        "agg": "1m",
        "materialized_only": True,
        "series": [{"device_id": str(device_id), "point_id": str(p)} for p in points],
    }
    assert [e["data"] for e in results(tenant_a, body)] == [[], [], []]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"{", "JSON"),
        (b"[]", "object"),
        ({"start": "x"}, "series"),
        ({"series": []}, "1 to 100"),
        (
            {"series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4())}] * 101},
            "1 to 100",
        ),
        ({"series": [{"device_id": "nope", "point_id": str(uuid.uuid4())}]}, "series[0].device_id"),
        ({"series": [{"device_id": str(uuid.uuid4())}]}, "series[0].point_id"),
        ({"series": ["x"]}, "series[0]"),
        (
            {"series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4()), "x": 1}]},
            "'x'",
        ),
        ({"timezone": "UTC"}, "'timezone'"),
        (
            {
                "series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4())}],
                "end": "2026-01-01T00:00:00Z",
            },
            "'start'",
        ),
        (
            {
                "series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4())}],
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T01:00:00",
            },
            "offset",
        ),
        (
            {
                "series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4())}],
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T01:00:00Z",
                "limit": "5",
            },
            "'limit'",
        ),
        (
            {
                "series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4())}],
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T01:00:00Z",
                "agg": "2m",
            },
            "'agg'",
        ),
        (
            {
                "series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4())}],
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T01:00:00Z",
                "materialized_only": "yes",
            },
            "materialized_only",
        ),
        (
            # A zone PostgreSQL does not know: the whole request's 400, not one per element.
            {
                "series": [{"device_id": str(uuid.uuid4()), "point_id": str(uuid.uuid4())}],
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-03T00:00:00Z",
                "agg": "1d",
                "tz": "Nowhere/Atlantis",
            },
            "IANA time zone",
        ),
    ],
)
def test_bad_bodies_are_a_400_naming_the_problem(
    tenant_a: TenantFixture, body: Any, names: str
) -> None:
    response = post(tenant_a, body)
    assert response.status_code == 400
    error = orjson.loads(response.content)["error"]
    assert error["code"] == "bad_request"
    assert names in error["message"]


def test_it_needs_a_key_and_post(tenant_a: TenantFixture) -> None:
    assert tenant_a.client.get("/data/query").status_code == 405
    from django.test import Client

    assert Client().post("/data/query", b"{}", content_type="application/json").status_code == 401


def test_the_whole_request_reads_one_snapshot(
    committed_db: None,
    make_tenant: Callable[[str], TenantFixture],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sample committed by another connection after the request exported its snapshot and
    # before the read helper's transaction began must not show in either half: the helper
    # imports the request's snapshot (SET TRANSACTION SNAPSHOT) instead of taking its own, which
    # would already see the write.
    monkeypatch.setattr(queries, "BATCH_SPLIT_ROWS", 1)
    tenant = make_tenant("snapshot")
    device_id, first, second, t = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), recent()
    ingest(tenant, device_id, first, [(t, 1.0)])
    ingest(tenant, device_id, second, [(t, 2.0)])
    calls: list[int] = []
    real_helper = split.helper

    class WriteFirst:
        """The helper, committing the write before it takes the job."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def submit(self, fn: Any, *args: Any) -> Any:
            if not calls:
                with psycopg.connect(**connection_params()) as other:
                    other.execute(BY_TENANT_SQL, [str(tenant.id), str(tenant.id), RUNTIME_ROLE])
                    for point in (first, second):
                        other.execute(
                            "SELECT * FROM ts_ingest(%s::text[], %s::text[],"
                            " %s::timestamptz[], %s::float8[], %s::boolean[], %s::text[])",
                            [
                                [str(device_id)],
                                [str(point)],
                                [t + timedelta(minutes=1)],
                                [3.0],
                                [None],
                                [None],
                            ],
                        )
            calls.append(1)
            return self.inner.submit(fn, *args)

    monkeypatch.setattr(split, "helper", lambda: WriteFirst(real_helper()))
    body = {
        **window(t, t + timedelta(hours=1)),
        "series": [{"device_id": str(device_id), "point_id": str(p)} for p in (first, second)],
    }
    before = halves("helper")
    got = results(tenant, body)
    assert calls  # the write was committed while the batch was being read
    assert halves("helper") == before + 1  # and half of it was read on the helper
    assert [[r["v"] for r in e["data"]] for e in got] == [[1.0], [2.0]]
    # The write did commit: the next request sees it.
    later = orjson.loads(
        get(
            tenant, device_id=device_id, point_id=second, **window(t, t + timedelta(hours=1))
        ).content
    )
    assert [r["v"] for r in later["data"]] == [2.0, 3.0]


@pytest.mark.parametrize("agg", ["raw", "1m", "5m", "1h", "1d"])
def test_a_mixed_batch_read_on_two_connections_is_what_get_answers(
    committed_db: None,
    make_tenant: Callable[[str], TenantFixture],
    monkeypatch: pytest.MonkeyPatch,
    agg: str,
) -> None:
    # Every row shape in one request, interleaved with an unknown series and a repeat, and
    # enough series that the batch is read in two halves at once (queries.read_json_pages):
    # half on the request's connection, half on the read helper, each half one statement per
    # shape. Every element is still exactly GET's answer for its series, in request order.
    monkeypatch.setattr(queries, "BATCH_SPLIT_ROWS", 1)
    tenant = make_tenant("mixed")
    device_id, t = uuid.uuid4(), recent() - timedelta(hours=2)
    numeric = [uuid.uuid4() for _ in range(3)]
    flag, mode, meter, unknown = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for n, point in enumerate(numeric):
        ingest(
            tenant, device_id, point, [(t + timedelta(minutes=7 * i), n + i / 3) for i in range(20)]
        )
    ingest(
        tenant, device_id, flag, [(t + timedelta(minutes=11 * i), i % 3 == 0) for i in range(12)]
    )
    ingest(
        tenant,
        device_id,
        mode,
        [(t + timedelta(minutes=13 * i), "heat" if i % 2 else "cool") for i in range(10)],
    )
    ingest(
        tenant, device_id, meter, [(t + timedelta(minutes=5 * i), float(10 * i)) for i in range(30)]
    )
    mark(tenant, device_id, meter)  # a counter: its rows carry delta
    order = [numeric[0], flag, unknown, mode, meter, numeric[1], numeric[0], numeric[2]]
    w = window(t - timedelta(hours=1), t + timedelta(hours=4))
    if agg == "1d":  # whole UTC days around the samples (the tenant's zone: UTC)
        midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
        w = window(midnight - timedelta(days=1), midnight + timedelta(days=2))
    before = halves("helper")
    got = results(
        tenant,
        {
            **w,
            "agg": agg,
            "series": [{"device_id": str(device_id), "point_id": str(p)} for p in order],
        },
    )
    assert halves("helper") == before + 1  # it did read half of the series on the helper
    expected = []
    for point in order:
        response = get(tenant, device_id=device_id, point_id=point, agg=agg, **w)
        if point == unknown:
            assert response.status_code == 404
            expected.append(
                {
                    "device_id": str(device_id),
                    "point_id": str(point),
                    "error": orjson.loads(response.content)["error"],
                }
            )
        else:
            assert response.status_code == 200
            expected.append(orjson.loads(response.content))
    assert got == expected
    assert all(e.get("data") for e in got if "error" not in e)  # every series answered rows
