"""POST /data/points against the real PostgreSQL: storage, idempotence, kinds, tenancy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
import pytest
from django.db import connection
from django.test import Client, override_settings

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.ingest.parse import parse_batch
from traksense.ingest.write import write_samples

DEV = "0b0e0e0e-0000-4000-8000-0000000000d1"
PT = "0b0e0e0e-0000-4000-8000-0000000000a1"
PT2 = "0b0e0e0e-0000-4000-8000-0000000000a2"
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def iso(seconds: float = 0) -> str:
    return (BASE + timedelta(seconds=seconds)).isoformat()


def sample(second: float = 0, value: Any = 1.5, **over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"device_id": DEV, "point_id": PT, "ts": iso(second), "value": value}
    s.update(over)
    return s


def post(client: Client, *samples: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    body = raw if raw is not None else orjson.dumps({"samples": list(samples)})
    response = client.post("/data/points", data=body, content_type="application/json")
    return response.status_code, orjson.loads(response.content)


def stored() -> tuple[int, int]:
    """(series, samples) in the base tables, read as the owner."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT count(*) FROM ts_series), (SELECT count(*) FROM ts_measure)")
        row = cursor.fetchone()
    return int(row[0]), int(row[1])


def rows_of(tenant: TenantFixture) -> list[tuple[Any, ...]]:
    """What the tenant sees through ts_measure_tenant."""
    with tenant_context(tenant.id) as cursor:
        cursor.execute(
            "SELECT device_id::text, point_id::text, ts, v_num, v_bool, v_text"
            " FROM ts_measure_tenant ORDER BY device_id, point_id, ts"
        )
        return list(cursor.fetchall())


def test_it_stores_a_batch_and_answers_the_counts(tenant_a: TenantFixture) -> None:
    status, answer = post(tenant_a.client, sample(0, 1.5), sample(1, 2), sample(0, 7, point_id=PT2))
    assert status == 200
    assert answer == {"accepted": 3, "duplicates": 0, "overwritten": 0}
    assert stored() == (2, 3)
    assert rows_of(tenant_a) == [
        (DEV, PT, BASE, 1.5, None, None),
        (DEV, PT, BASE + timedelta(seconds=1), 2.0, None, None),
        (DEV, PT2, BASE, 7.0, None, None),
    ]


def test_it_stores_booleans_and_texts_of_their_own_points(tenant_a: TenantFixture) -> None:
    status, answer = post(
        tenant_a.client, sample(0, True), sample(0, "on", point_id=PT2), sample(1, False)
    )
    assert (status, answer["accepted"]) == (200, 3)
    assert [r[3:] for r in rows_of(tenant_a)] == [
        (None, True, None),
        (None, False, None),
        (None, None, "on"),
    ]


def test_it_stores_any_offset_as_the_same_instant(tenant_a: TenantFixture) -> None:
    local = (BASE + timedelta(hours=2)).astimezone().isoformat()
    shifted = BASE.astimezone(timezone(timedelta(hours=-3, minutes=-30))).isoformat()
    status, _ = post(tenant_a.client, sample(ts=shifted), sample(ts=local))
    assert status == 200
    assert [r[2] for r in rows_of(tenant_a)] == [BASE, BASE + timedelta(hours=2)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "body is not valid JSON"),
        (b'{"samples": [{"value": NaN}]}', "body is not valid JSON"),
        (b'{"samples": []}', '"samples" is empty'),
        (b'{"rows": []}', "unknown key(s) in body"),
        (
            orjson.dumps({"samples": [sample(0), sample(1, device_id="d1")]}),
            "samples[1].device_id",
        ),
        (
            orjson.dumps({"samples": [sample(0), sample(ts="2026-01-01T00:00:00")]}),
            "samples[1].ts: timestamp has no UTC offset",
        ),
        (orjson.dumps({"samples": [sample(0), sample(1, None)]}), "samples[1].value"),
        (orjson.dumps({"samples": [sample(0), sample(1, [2])]}), "samples[1].value"),
        (orjson.dumps({"samples": [sample(0), {"ts": iso(), "value": 1}]}), "missing key(s)"),
        (
            orjson.dumps({"samples": [sample(0, ts=(BASE + timedelta(days=3)).isoformat())]}),
            "in the future",
        ),
        (orjson.dumps({"samples": [sample(0, 1.7e308), sample(1, 1.7e308)]}), "out of range"),
        (orjson.dumps({"samples": [sample(0, 0.0), sample(1, 5e-324)]}), "out of range"),
    ],
)
def test_it_rejects_bad_input_and_writes_nothing(
    tenant_a: TenantFixture, raw: bytes, message: str
) -> None:
    status, answer = post(tenant_a.client, raw=raw)
    assert status == 400
    assert message in answer["error"]["message"]
    assert answer["error"]["code"]
    assert stored() == (0, 0)


def test_it_answers_413_for_too_many_samples(tenant_a: TenantFixture) -> None:
    with override_settings(INGEST_MAX_SAMPLES=2):
        status, answer = post(tenant_a.client, sample(0), sample(1), sample(2))
    assert status == 413
    assert answer["error"]["code"] == "batch_too_large"
    assert stored() == (0, 0)


def test_it_answers_413_for_a_body_over_the_size_limit(tenant_a: TenantFixture) -> None:
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        status, answer = post(tenant_a.client, *[sample(i) for i in range(50)])
    assert status == 413
    assert answer["error"]["code"] == "body_too_large"
    assert stored() == (0, 0)


def test_it_stores_the_same_batch_once(tenant_a: TenantFixture) -> None:
    batch = [sample(i, float(i)) for i in range(5)]
    assert post(tenant_a.client, *batch) == (
        200,
        {"accepted": 5, "duplicates": 0, "overwritten": 0},
    )
    assert post(tenant_a.client, *batch) == (
        200,
        {"accepted": 0, "duplicates": 5, "overwritten": 0},
    )
    assert stored() == (1, 5)


def test_it_overwrites_a_stored_sample_with_a_different_value(tenant_a: TenantFixture) -> None:
    post(tenant_a.client, sample(0, 1.0), sample(1, 2.0))
    status, answer = post(tenant_a.client, sample(0, 1.0), sample(1, 20.0), sample(2, 3.0))
    assert (status, answer) == (200, {"accepted": 2, "duplicates": 1, "overwritten": 1})
    assert [r[3] for r in rows_of(tenant_a)] == [1.0, 20.0, 3.0]


def test_it_keeps_the_last_of_a_key_repeated_in_one_batch(tenant_a: TenantFixture) -> None:
    status, answer = post(tenant_a.client, sample(0, 1.0), sample(0, 2.0), sample(0, 3.0))
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 2, "overwritten": 0})
    assert [r[3] for r in rows_of(tenant_a)] == [3.0]
    # The same again over a stored value: the batch's last value wins.
    status, answer = post(tenant_a.client, sample(0, 5.0), sample(0, 4.0))
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 1, "overwritten": 1})
    assert [r[3] for r in rows_of(tenant_a)] == [4.0]


def test_it_treats_uppercase_ids_as_the_same_series(tenant_a: TenantFixture) -> None:
    post(tenant_a.client, sample(0, 1.0))
    status, answer = post(tenant_a.client, sample(0, 1.0, device_id=DEV.upper()), sample(1, 2.0))
    assert (status, answer["accepted"], answer["duplicates"]) == (200, 1, 1)
    assert stored() == (1, 2)


def test_it_rejects_a_value_of_another_kind_than_the_points(tenant_a: TenantFixture) -> None:
    post(tenant_a.client, sample(0, 1.0))
    status, answer = post(tenant_a.client, sample(1, 2.0, point_id=PT2), sample(1, True))
    assert status == 400
    assert answer["error"]["code"] == "kind_mismatch"
    assert "holds numeric values; got a boolean value" in answer["error"]["message"]
    assert stored() == (1, 1)


def test_it_rejects_two_kinds_for_one_point_in_a_batch(tenant_a: TenantFixture) -> None:
    status, answer = post(tenant_a.client, sample(0, 1.0), sample(1, "high"))
    assert status == 400
    assert answer["error"]["code"] == "kind_mismatch"
    assert "both numeric and text values" in answer["error"]["message"]
    assert stored() == (0, 0)


def test_it_keeps_tenants_apart(tenant_a: TenantFixture, tenant_b: TenantFixture) -> None:
    assert post(tenant_a.client, sample(0, 1.0), sample(1, 2.0))[0] == 200
    # B uses the very same device and point ids, and one timestamp A already used.
    status, answer = post(tenant_b.client, sample(0, 10.0))
    assert (status, answer["accepted"], answer["duplicates"]) == (200, 1, 0)
    assert stored() == (2, 3)
    assert [r[3] for r in rows_of(tenant_a)] == [1.0, 2.0]
    assert [r[3] for r in rows_of(tenant_b)] == [10.0]


def test_it_rejects_an_outsiders_key_for_a_series_of_a(
    tenant_a: TenantFixture, outsider: TenantFixture
) -> None:
    post(tenant_a.client, sample(0, 1.0))
    # The outsider writes "A's" device/point ids: it only ever reaches a series of its own, and
    # a different kind there is no conflict with A's numeric point.
    status, answer = post(outsider.client, sample(0, True))
    assert (status, answer["accepted"]) == (200, 1)
    assert rows_of(tenant_a) == [(DEV, PT, BASE, 1.0, None, None)]
    assert rows_of(outsider) == [(DEV, PT, BASE, None, True, None)]


@pytest.mark.parametrize(
    "headers",
    [{}, {"HTTP_AUTHORIZATION": "Bearer tsk_not-a-key"}, {"HTTP_AUTHORIZATION": "Basic abc"}],
)
def test_it_answers_401_without_a_valid_key(
    tenant_a: TenantFixture, headers: dict[str, str]
) -> None:
    body = orjson.dumps({"samples": [sample(0)]})
    client = Client(**headers)  # type: ignore[arg-type]
    response = client.post("/data/points", data=body, content_type="application/json")
    assert response.status_code == 401
    error = orjson.loads(response.content)["error"]
    assert error["code"] == "unauthorized" and error["message"]
    assert stored() == (0, 0)


def test_it_creates_partitions_for_each_day_of_a_batch(tenant_a: TenantFixture) -> None:
    days = [BASE - timedelta(days=d) for d in (0, 3, 9)]
    status, _ = post(tenant_a.client, *[sample(ts=d.isoformat()) for d in days])
    assert status == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM ts_partition p WHERE p.tier = 'raw'"
            " AND EXISTS (SELECT FROM unnest(%s::timestamptz[]) t WHERE t >= p.lo AND t < p.hi)",
            [days],
        )
        assert cursor.fetchone()[0] == 3
    assert stored() == (1, 3)


def test_write_samples_refuses_to_write_without_a_tenant(db: None) -> None:
    batch = parse_batch(orjson.dumps({"samples": [sample(0)]}), datetime.now(UTC))
    # Inside the test's transaction the Python guard passes; the database refuses (fails closed).
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        write_samples(batch)


def test_write_samples_writes_for_the_tenant_of_the_context(tenant_a: TenantFixture) -> None:
    batch = parse_batch(
        orjson.dumps({"samples": [sample(0), sample(1, point_id=str(uuid.uuid4()))]}),
        datetime.now(UTC),
    )
    with tenant_context(tenant_a.id):
        result = write_samples(batch)
    assert (result.accepted, result.duplicates, result.overwritten) == (2, 0, 0)
    assert len(rows_of(tenant_a)) == 2


def test_samples_at_the_magnitude_limits_roll_up_and_read_back(tenant_a: TenantFixture) -> None:
    """Values that PostgreSQL could not sum (1.7e308 twice) or average (5e-324 / 2) are refused
    above; those at the limits are summed, averaged and read back, in real time and refreshed,
    and never stop the refresh of the tier."""
    from traksense.rollups.refresh import refresh

    minute = BASE.replace(second=0)
    values = [1e300, 1e300, -1e300, 1e-300, 1e-300, 0.0]
    points = [PT, PT, PT2, PT2, "0b0e0e0e-0000-4000-8000-0000000000a3", PT2]
    seconds = [0, 1, 0, 1, 0, 2]
    status, _ = post(
        tenant_a.client,
        *(sample(s, v, point_id=p) for s, v, p in zip(seconds, values, points, strict=True)),
    )
    assert status == 200

    def averages() -> dict[str, float]:
        response = tenant_a.client.get(
            "/data/points",
            {
                "device_id": DEV,
                "point_id": PT,
                "agg": "1m",
                "start": minute.isoformat(),
                "end": (minute + timedelta(minutes=1)).isoformat(),
            },
        )
        assert response.status_code == 200, response.content
        return {r["ts"]: r["v_avg"] for r in orjson.loads(response.content)["data"]}

    assert averages() == {minute.isoformat(): 1e300}
    refresh("1m", minute, minute + timedelta(minutes=1))
    assert averages() == {minute.isoformat(): 1e300}
