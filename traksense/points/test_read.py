"""GET /data/points (raw tier) and GET /data/series against a real PostgreSQL."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from django.test import Client

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # tests pass an explicit window, so any fixed time works


def recent() -> datetime:
    """A minute-aligned instant inside raw retention."""
    return (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)


def ingest(
    tenant: TenantFixture, device: uuid.UUID, point: uuid.UUID, rows: list[tuple[datetime, Any]]
) -> None:
    n = len(rows)
    num = [v if isinstance(v, float | int) and not isinstance(v, bool) else None for _, v in rows]
    bools = [v if isinstance(v, bool) else None for _, v in rows]
    texts = [v if isinstance(v, str) else None for _, v in rows]
    with tenant_context(tenant.id) as cur:
        cur.execute(
            "SELECT * FROM ts_ingest(%s::text[], %s::text[], %s::timestamptz[], %s::float8[],"
            " %s::boolean[], %s::text[])",
            [[str(device)] * n, [str(point)] * n, [t for t, _ in rows], num, bools, texts],
        )


def series_id_of(tenant: TenantFixture, device: uuid.UUID, point: uuid.UUID) -> int:
    """The series id of (device, point), as the tenant's own view shows it."""
    with tenant_context(tenant.id) as cur:
        cur.execute(
            "SELECT series_id FROM ts_series_tenant WHERE device_id = %s AND point_id = %s",
            [device, point],
        )
        (series_id,) = cur.fetchone()
    return int(series_id)


def get(tenant: TenantFixture, path: str = "/data/points", **params: Any) -> Any:
    return tenant.client.get(path, {k: str(v) for k, v in params.items()})


def streamed(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def window(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


Series = tuple[uuid.UUID, uuid.UUID, datetime]


@pytest.fixture
def series(tenant_a: TenantFixture) -> Series:
    """Ten numeric samples, one a minute, starting at a recent minute."""
    device, point, t = uuid.uuid4(), uuid.uuid4(), recent()
    ingest(tenant_a, device, point, [(t + timedelta(minutes=i), float(i)) for i in range(10)])
    return device, point, t


def test_it_answers_raw_rows_in_order_within_start_inclusive_end_exclusive(
    tenant_a: TenantFixture, series: Series
) -> None:
    device, point, t = series
    response = get(
        tenant_a,
        device_id=device,
        point_id=point,
        **window(t + timedelta(minutes=2), t + timedelta(minutes=5)),
    )
    assert response.status_code == 200
    body = orjson.loads(response.content)
    assert body["device_id"] == str(device)
    assert body["point_id"] == str(point)
    assert body["agg"] == "raw"
    assert datetime.fromisoformat(body["start"]) == t + timedelta(minutes=2)
    assert datetime.fromisoformat(body["end"]) == t + timedelta(minutes=5)
    assert [r["v"] for r in body["data"]] == [2.0, 3.0, 4.0]
    assert [datetime.fromisoformat(r["ts"]) for r in body["data"]] == [
        t + timedelta(minutes=m) for m in (2, 3, 4)
    ]
    assert "next" not in body and "degraded_from" not in body


def test_timestamps_are_rfc3339_in_utc(tenant_a: TenantFixture, series: Series) -> None:
    device, point, t = series
    body = orjson.loads(
        get(
            tenant_a,
            device_id=device,
            point_id=point,
            start=t.astimezone(timezone(timedelta(hours=2))).isoformat(),
            end=(t + timedelta(hours=3)).isoformat(),
        ).content
    )
    assert body["start"].endswith("+00:00")
    assert body["data"] == [] or all(r["ts"].endswith("+00:00") for r in body["data"])
    body = orjson.loads(
        get(
            tenant_a, device_id=device, point_id=point, **window(t, t + timedelta(minutes=1))
        ).content
    )
    assert body["data"] == [{"ts": t.isoformat(), "v": 0.0}]


def test_boolean_and_text_values_keep_their_json_type(tenant_a: TenantFixture) -> None:
    device, flag, label, t = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), recent()
    ingest(tenant_a, device, flag, [(t, True), (t + timedelta(seconds=1), False)])
    ingest(tenant_a, device, label, [(t, 'say "hi", ok'), (t + timedelta(seconds=1), "a\\b\nc")])
    w = window(t, t + timedelta(minutes=1))
    flags = orjson.loads(get(tenant_a, device_id=device, point_id=flag, **w).content)["data"]
    assert [r["v"] for r in flags] == [True, False]
    labels = orjson.loads(get(tenant_a, device_id=device, point_id=label, **w).content)["data"]
    assert [r["v"] for r in labels] == ['say "hi", ok', "a\\b\nc"]


@pytest.mark.parametrize("agg", ["1m", "5m", "1h"])
def test_a_rollup_of_a_boolean_or_text_point_answers_state_rows(
    tenant_a: TenantFixture, agg: str
) -> None:
    # (A 400 until issue 19. Values: traksense/rollups/test_state_rollups.py.)
    device, flag, label = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    t = recent().replace(minute=0)
    ingest(tenant_a, device, flag, [(t, True)])
    ingest(tenant_a, device, label, [(t, "on")])
    ask: dict[str, Any] = {"device_id": device, "agg": agg, **window(t, t + timedelta(hours=1))}
    flag_rows = orjson.loads(get(tenant_a, point_id=flag, **ask).content)["data"]
    label_rows = orjson.loads(get(tenant_a, point_id=label, **ask).content)["data"]
    assert flag_rows[0] == {
        "ts": t.isoformat(),
        "first": True,
        "last": True,
        "changes": 0,
        "n": 1,
        "true_s": min(600, {"1m": 60, "5m": 300, "1h": 3600}[agg]),
    }
    assert label_rows[0]["time_in"] == {"on": flag_rows[0]["true_s"]}


def test_an_unknown_series_and_another_tenants_series_get_the_same_404(
    tenant_a: TenantFixture, tenant_b: TenantFixture, series: Series
) -> None:
    device, point, t = series
    w = window(t, t + timedelta(hours=1))
    theirs = get(tenant_b, device_id=device, point_id=point, **w)
    # The same point id under a device that exists nowhere: only the device id differs.
    unknown_device = uuid.uuid4()
    nowhere = get(tenant_b, device_id=unknown_device, point_id=point, **w)
    assert theirs.status_code == nowhere.status_code == 404
    # Byte for byte the same answer once the one id the caller sent differently is aligned.
    assert theirs.content == nowhere.content.replace(
        str(unknown_device).encode(), str(device).encode()
    )
    assert orjson.loads(theirs.content)["error"]["code"] == "not_found"


def test_a_series_found_for_one_tenant_is_never_answered_to_another(
    tenant_a: TenantFixture, tenant_b: TenantFixture, series: Series
) -> None:
    # find_series keeps what it found per tenant (queries.py): A's lookup must not serve B.
    device, point, t = series
    w = window(t, t + timedelta(hours=1))
    assert get(tenant_a, device_id=device, point_id=point, **w).status_code == 200
    assert get(tenant_a, device_id=device, point_id=point, **w).status_code == 200
    assert get(tenant_b, device_id=device, point_id=point, **w).status_code == 404
    # A series unknown when first asked for is found once it exists (misses are not kept).
    assert get(tenant_b, device_id=device, point_id=point, **w).status_code == 404
    ingest(tenant_b, device, point, [(t, 7.5)])
    answer = get(tenant_b, device_id=device, point_id=point, **w)
    assert answer.status_code == 200
    assert [row["v"] for row in orjson.loads(answer.content)["data"]] == [7.5]


def test_the_outsider_sees_nothing_on_any_endpoint(
    tenant_a: TenantFixture, outsider: TenantFixture, series: Series
) -> None:
    device, point, t = series
    w = window(t, t + timedelta(hours=1))
    for agg in ("raw", "auto"):
        assert get(outsider, device_id=device, point_id=point, agg=agg, **w).status_code == 404
    csv_answer = get(outsider, device_id=device, point_id=point, format="csv", **w)
    assert csv_answer.status_code == 404
    listing = orjson.loads(get(outsider, "/data/series").content)
    assert listing == {"series": []}
    assert orjson.loads(get(outsider, "/data/series", device_id=device).content) == {"series": []}


@pytest.mark.parametrize("path", ["/data/points", "/data/series"])
def test_it_answers_401_without_a_key_or_with_a_bad_one(
    client: Client, series: Series, path: str
) -> None:
    device, point, t = series
    params = {"device_id": str(device), "point_id": str(point), **window(t, t + timedelta(hours=1))}
    for headers in (
        {},
        {"Authorization": "Bearer tsk_nope"},
        {"Authorization": "Basic x"},
    ):
        response = client.get(path, params, headers=headers)
        assert response.status_code == 401
        assert orjson.loads(response.content)["error"]["code"] == "unauthorized"


BAD_INPUTS = [
    {"device_id": "nope"},
    {"point_id": "123"},
    {"start": "2026-01-01T00:00:00"},
    {"end": "2026-13-01T00:00:00Z"},
    {"agg": "10m"},
    {"limit": "0"},
    {"limit": "-1"},
    {"limit": "2.5"},
    {"limit": "100001"},
    {"max_points": "x"},
    {"format": "xml"},
    {"materialized_only": "yes please"},
    {"cursor": "garbled!!"},
    {"cursor": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
    {"colour": "blue"},
]


@pytest.mark.parametrize(
    "bad", BAD_INPUTS, ids=lambda b: "-".join(f"{k}={v}" for k, v in b.items())
)
def test_each_bad_parameter_is_a_400_with_a_message(
    tenant_a: TenantFixture, series: Series, bad: dict[str, str]
) -> None:
    device, point, t = series
    params: dict[str, Any] = {
        "device_id": device,
        "point_id": point,
        **window(t, t + timedelta(hours=1)),
        **bad,
    }
    response = get(tenant_a, **params)
    assert response.status_code == 400
    error = orjson.loads(response.content)["error"]
    assert error["message"]
    assert error["code"] in ("bad_request", "bad_cursor")


def test_start_not_before_end_is_a_400(tenant_a: TenantFixture, series: Series) -> None:
    device, point, t = series
    for end in (t, t - timedelta(seconds=1)):
        response = get(tenant_a, device_id=device, point_id=point, **window(t, end))
        assert response.status_code == 400


def test_missing_parameters_are_a_400(tenant_a: TenantFixture) -> None:
    assert get(tenant_a).status_code == 400


def test_a_cursor_from_another_series_is_a_400(tenant_a: TenantFixture, series: Series) -> None:
    device, point, t = series
    w = window(t, t + timedelta(hours=1))
    first = orjson.loads(get(tenant_a, device_id=device, point_id=point, limit=2, **w).content)
    cursor = parse_qs(urlsplit(first["next"]).query)["cursor"][0]
    other = uuid.uuid4()
    ingest(tenant_a, device, other, [(t, 1.0)])
    response = get(tenant_a, device_id=device, point_id=other, cursor=cursor, **w)
    assert response.status_code == 400
    assert orjson.loads(response.content)["error"]["code"] == "bad_cursor"


def test_paging_walks_every_row_once_while_new_rows_arrive(tenant_a: TenantFixture) -> None:
    device, point, t = uuid.uuid4(), uuid.uuid4(), recent() - timedelta(hours=1)
    ingest(tenant_a, device, point, [(t + timedelta(seconds=i), float(i)) for i in range(0, 50, 2)])
    url: str | None = "/data/points"
    params: dict[str, Any] | None = {
        "device_id": device,
        "point_id": point,
        "limit": 4,
        **window(t, t + timedelta(minutes=5)),
    }
    seen: list[float] = []
    pages = 0
    while url is not None:
        response = tenant_a.client.get(url, params) if params else tenant_a.client.get(url)
        assert response.status_code == 200
        body = orjson.loads(response.content)
        assert len(body["data"]) <= 4
        seen += [r["v"] for r in body["data"]]
        pages += 1
        if pages == 2:
            # New rows: some after the cursor (must show up), one at the end of the window.
            ingest(
                tenant_a,
                device,
                point,
                [(t + timedelta(seconds=s), float(s)) for s in (31, 33, 299)],
            )
        url, params = body.get("next"), None
        assert pages < 50
    expected = sorted([float(i) for i in range(0, 50, 2)] + [31.0, 33.0, 299.0])
    assert seen == expected  # every row once, in order
    assert pages == 7  # 25 + 3 rows, 4 per page; the full last page is not cut


def test_the_next_url_keeps_the_query_and_the_last_page_has_none(
    tenant_a: TenantFixture, series: Series
) -> None:
    device, point, t = series
    w = window(t, t + timedelta(minutes=10))
    body = orjson.loads(get(tenant_a, device_id=device, point_id=point, limit=10, **w).content)
    assert len(body["data"]) == 10 and "next" not in body  # exactly full: not cut
    body = orjson.loads(get(tenant_a, device_id=device, point_id=point, limit=9, **w).content)
    query = parse_qs(urlsplit(body["next"]).query)
    assert urlsplit(body["next"]).path == "/data/points"
    assert query["limit"] == ["9"] and query["device_id"] == [str(device)]
    last = orjson.loads(tenant_a.client.get(body["next"]).content)
    assert [r["v"] for r in last["data"]] == [9.0] and "next" not in last


def test_csv_has_a_header_and_one_line_per_row(tenant_a: TenantFixture, series: Series) -> None:
    device, point, t = series
    w = window(t, t + timedelta(minutes=3))
    response = get(tenant_a, device_id=device, point_id=point, format="csv", **w)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["X-Agg"] == "raw"
    text = streamed(response)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["ts", "v"]
    assert [(datetime.fromisoformat(r[0]), float(r[1])) for r in rows[1:]] == [
        (t + timedelta(minutes=i), float(i)) for i in range(3)
    ]


def test_csv_and_json_give_the_same_timestamp_text(tenant_a: TenantFixture) -> None:
    device, point, t = uuid.uuid4(), uuid.uuid4(), recent()
    offsets = [0, 500_000, 123_456, 1, 59_999_999]  # microseconds after t
    ingest(tenant_a, device, point, [(t + timedelta(microseconds=us), 1.0) for us in offsets])
    w = window(t, t + timedelta(minutes=1))
    data = orjson.loads(get(tenant_a, device_id=device, point_id=point, **w).content)["data"]
    csv_answer = get(tenant_a, device_id=device, point_id=point, format="csv", **w)
    rows = list(csv.reader(io.StringIO(streamed(csv_answer))))[1:]
    assert [r[0] for r in rows] == [d["ts"] for d in data]
    assert [d["ts"] for d in data][:3] == [
        t.isoformat(),
        (t + timedelta(microseconds=1)).isoformat(),
        (t + timedelta(microseconds=123_456)).isoformat(),
    ]
    assert len(data) == len(offsets)


def test_accept_text_csv_selects_csv_and_text_values_are_quoted(tenant_a: TenantFixture) -> None:
    device, label, t = uuid.uuid4(), uuid.uuid4(), recent()
    ingest(tenant_a, device, label, [(t, 'a "quoted", value'), (t + timedelta(seconds=1), "x\ny")])
    response = tenant_a.client.get(
        "/data/points",
        {"device_id": str(device), "point_id": str(label), **window(t, t + timedelta(minutes=1))},
        HTTP_ACCEPT="text/csv",
    )
    rows = list(csv.reader(io.StringIO(streamed(response))))
    assert [r[1] for r in rows[1:]] == ['a "quoted", value', "x\ny"]


def test_a_cut_csv_page_links_to_the_next(tenant_a: TenantFixture, series: Series) -> None:
    device, point, t = series
    response = get(
        tenant_a,
        device_id=device,
        point_id=point,
        format="csv",
        limit=4,
        **window(t, t + timedelta(minutes=10)),
    )
    rows = list(csv.reader(io.StringIO(streamed(response))))
    assert len(rows) == 5
    link = response["Link"]
    assert link.startswith("</data/points?") and link.endswith('>; rel="next"')
    follow = tenant_a.client.get(link[1 : link.index(">")])
    rest = list(csv.reader(io.StringIO(streamed(follow))))
    assert [float(r[1]) for r in rest[1:5]] == [4.0, 5.0, 6.0, 7.0]


def test_series_lists_kind_and_first_and_last_sample(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    device, num, flag, t = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), recent()
    ingest(tenant_a, device, num, [(t + timedelta(minutes=i), 1.5) for i in range(5)])
    ingest(tenant_a, device, flag, [(t, True)])
    ingest(tenant_b, uuid.uuid4(), uuid.uuid4(), [(t, 9.0)])
    listing = orjson.loads(get(tenant_a, "/data/series").content)["series"]
    by_point = {s["point_id"]: s for s in listing}
    assert set(by_point) == {str(num), str(flag)}
    assert by_point[str(num)]["kind"] == "numeric"
    assert by_point[str(flag)]["kind"] == "boolean"
    assert datetime.fromisoformat(by_point[str(num)]["first"]) == t
    assert datetime.fromisoformat(by_point[str(num)]["last"]) == t + timedelta(minutes=4)
    assert {s["device_id"] for s in listing} == {str(device)}
    only = orjson.loads(get(tenant_a, "/data/series", device_id=uuid.uuid4()).content)
    assert only == {"series": []}


def test_series_rejects_bad_parameters(tenant_a: TenantFixture) -> None:
    assert get(tenant_a, "/data/series", device_id="x").status_code == 400
    assert get(tenant_a, "/data/series", sort="point").status_code == 400  # kind is a filter now


def test_other_methods_are_a_405(tenant_a: TenantFixture) -> None:
    assert tenant_a.client.delete("/data/points").status_code == 405
    assert tenant_a.client.post("/data/series").status_code == 405
