"""Per-tenant limits: ingest samples/s and concurrent reads, kept in PostgreSQL (so every process
shares them), answered 429 with Retry-After and the limit's name; other tenants unaffected."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import orjson
import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.db.cursors import connection_params
from traksense.tenancy.models import DEFAULT_INGEST_RATE, DEFAULT_READ_CONCURRENCY, Tenant

BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def cli(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def batch(n: int, device: str | None = None) -> bytes:
    device = device or str(uuid.uuid4())
    point = str(uuid.uuid4())
    return orjson.dumps(
        {
            "samples": [
                {
                    "device_id": device,
                    "point_id": point,
                    "ts": (BASE + timedelta(seconds=i)).isoformat(),
                    "value": float(i),
                }
                for i in range(n)
            ]
        }
    )


def post(tenant: TenantFixture, body: bytes) -> Any:
    return tenant.client.post("/data/points", data=body, content_type="application/json")


def read(tenant: TenantFixture) -> Any:
    return tenant.client.get(
        "/data/points",
        {
            "device_id": str(uuid.uuid4()),
            "point_id": str(uuid.uuid4()),
            "start": (BASE - timedelta(hours=1)).isoformat(),
            "end": BASE.isoformat(),
        },
    )


def stored_samples() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ts_measure")
        return int(cursor.fetchone()[0])


@pytest.mark.django_db
def test_tenant_limits_shows_the_documented_defaults_and_sets_new_ones(
    tenant_a: TenantFixture,
) -> None:
    assert cli("tenant", "limits", str(tenant_a.id)).splitlines() == [
        f"ingest_rate\t{DEFAULT_INGEST_RATE}",
        f"read_concurrency\t{DEFAULT_READ_CONCURRENCY}",
    ]
    out = cli(
        "tenant", "limits", str(tenant_a.id), "--ingest-rate", "50", "--read-concurrency", "0"
    )
    assert out.splitlines() == ["ingest_rate\t50", "read_concurrency\tunlimited"]
    tenant = Tenant.objects.get(id=tenant_a.id)
    assert (tenant.ingest_rate, tenant.read_concurrency) == (50, 0)
    with pytest.raises(CommandError, match=">= 0"):
        cli("tenant", "limits", str(tenant_a.id), "--ingest-rate", "-1")
    with pytest.raises(CommandError, match="no tenant"):
        cli("tenant", "limits", str(uuid.uuid4()), "--ingest-rate", "5")


@pytest.mark.django_db
def test_batches_over_the_ingest_rate_get_429_and_write_nothing_while_others_pass(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    # The measurement: 15 batches of 1,000 samples in a row were all answered 200.
    # (A bucket of 1,000 refills in 10 s: these requests take far less.)
    cli("tenant", "limits", str(tenant_a.id), "--ingest-rate", "100")
    answers = [post(tenant_a, batch(1000)).status_code for _ in range(15)]
    assert answers == [200] + [429] * 14
    written = stored_samples()
    assert written == 1000
    # 500 samples: five seconds of refill, however long the requests above took.
    refused = post(tenant_a, batch(500))
    assert refused.status_code == 429
    error = orjson.loads(refused.content)["error"]
    assert error["code"] == "rate_limited" and "ingest_rate" in error["message"]
    assert int(refused["Retry-After"]) >= 1
    assert stored_samples() == written
    # Another tenant, same moment: not slowed, not refused.
    assert [post(tenant_b, batch(1000)).status_code for _ in range(5)] == [200] * 5


@pytest.mark.django_db
def test_a_batch_larger_than_the_bucket_passes_once_then_waits_its_debt(
    tenant_a: TenantFixture,
) -> None:
    cli("tenant", "limits", str(tenant_a.id), "--ingest-rate", "10")  # a bucket of 100
    assert post(tenant_a, batch(400)).status_code == 200  # into a debt of 300 samples
    refused = post(tenant_a, batch(1))
    assert refused.status_code == 429
    assert 25 <= int(refused["Retry-After"]) <= 31  # ~300 samples at 10/s


@pytest.mark.django_db
def test_a_malformed_batch_costs_the_tenant_nothing(tenant_a: TenantFixture) -> None:
    cli("tenant", "limits", str(tenant_a.id), "--ingest-rate", "1")  # a bucket of 10
    for _ in range(5):
        assert post(tenant_a, b'{"samples": [{"device_id": "x"}]}').status_code == 400
    assert post(tenant_a, batch(10)).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_the_ingest_bucket_is_shared_by_every_connection(
    committed_db: None, tenant_a: TenantFixture
) -> None:
    # Another process's connection (any worker) draws from the same bucket as this one's.
    cli("tenant", "limits", str(tenant_a.id), "--ingest-rate", "100")  # a bucket of 1,000
    other = psycopg.connect(**connection_params("web"), autocommit=True)
    try:
        row = other.execute(
            "SELECT refused FROM ts_admit_ingest(%s, 1000)", [tenant_a.key]
        ).fetchone()
        assert row == (None,)
        refused = post(tenant_a, batch(5))
        assert refused.status_code == 429
    finally:
        other.close()


@pytest.mark.django_db(transaction=True, databases=["default", "web"])
def test_reads_over_the_concurrency_limit_get_429_while_others_read(
    web_api: None, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    cli("tenant", "limits", str(tenant_a.id), "--read-concurrency", "2")
    # Two of A's reads in flight elsewhere (another worker's transactions hold the slots).
    holders = [psycopg.connect(**connection_params("web")) for _ in range(2)]
    try:
        for holder in holders:
            row = holder.execute("SELECT refused FROM ts_bind_key(%s, true)", [tenant_a.key])
            assert row.fetchone() == (None,)
        refused = read(tenant_a)
        assert refused.status_code == 429
        assert refused["Retry-After"] == "1"
        assert "read_concurrency" in orjson.loads(refused.content)["error"]["message"]
        assert read(tenant_b).status_code == 404  # B reads (an unknown series: 404, not 429)
        holders[0].rollback()  # one read ends
        assert read(tenant_a).status_code == 404
    finally:
        for holder in holders:
            holder.close()
