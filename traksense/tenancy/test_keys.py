"""API keys as users expect them: list, revoke, read-only scope, expiry, last use, audit."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client

from traksense.conftest import TenantFixture
from traksense.observability.metrics import API_KEY_EVENTS, CROSS_TENANT_REFUSED
from traksense.tenancy import keys
from traksense.tenancy.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db

DEV = str(uuid.uuid4())
PT = str(uuid.uuid4())
TS = (datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)).isoformat()


def cli(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def post(client: Client, key: str) -> Any:
    body = orjson.dumps({"samples": [{"device_id": DEV, "point_id": PT, "ts": TS, "value": 1.0}]})
    return client.post(
        "/data/points",
        data=body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def get(client: Client, key: str, device: str = DEV, point: str = PT) -> Any:
    start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    end = datetime.now(UTC).isoformat()
    return client.get(
        "/data/points",
        {"device_id": device, "point_id": point, "start": start, "end": end},
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def test_apikey_create_prints_only_the_key_and_list_shows_it_without_the_key(
    tenant_a: TenantFixture,
) -> None:
    key = cli("apikey", "create", "--tenant", str(tenant_a.id), "--read-only").strip()
    assert key.startswith(keys.KEY_PREFIX) and "\n" not in key
    listing = cli("apikey", "list", "--tenant", str(tenant_a.id))
    lines = listing.splitlines()
    assert lines[0].split("\t") == [
        "id",
        "prefix",
        "scope",
        "created",
        "expires",
        "last_used",
        "state",
    ]
    assert len(lines) == 3  # the fixture's key and this one
    assert key not in listing and keys.hash_key(key) not in listing
    mine = [line.split("\t") for line in lines[1:] if key.startswith(line.split("\t")[1])]
    assert len(mine) == 1
    assert mine[0][2] == "read" and mine[0][4] == "-" and mine[0][6] == "live"


def test_apikey_list_shows_no_key_of_another_tenant(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    listing = cli("apikey", "list", "--tenant", str(tenant_b.id))
    assert tenant_a.key[:12] not in listing
    assert tenant_b.key[:12] in listing


def test_a_revoked_key_gets_401_and_the_revocation_is_audited(
    tenant_a: TenantFixture, caplog: pytest.LogCaptureFixture, client: Client
) -> None:
    key_id = ApiKey.objects.get(key_hash=keys.hash_key(tenant_a.key)).id
    before = API_KEY_EVENTS.labels("revoked")._value.get()
    with caplog.at_level(logging.INFO, logger="traksense.audit"):
        out = cli("apikey", "revoke", str(key_id))
    assert f"revoked key {key_id}" in out
    assert API_KEY_EVENTS.labels("revoked")._value.get() == before + 1
    assert any("api_key_revoked" in r.message and str(key_id) in r.message for r in caplog.records)
    assert post(client, tenant_a.key).status_code == 401
    assert get(client, tenant_a.key).status_code == 401
    with pytest.raises(CommandError, match="no live key"):
        cli("apikey", "revoke", str(key_id))


def test_key_creation_is_audited_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    tenant = Tenant.objects.create(name="audited")
    before = API_KEY_EVENTS.labels("created")._value.get()
    with caplog.at_level(logging.INFO, logger="traksense.audit"):
        key = keys.create_key(tenant)
    assert API_KEY_EVENTS.labels("created")._value.get() == before + 1
    lines = [r.message for r in caplog.records if "api_key_created" in r.message]
    assert len(lines) == 1 and str(tenant.id) in lines[0] and key not in lines[0]


def test_a_read_only_key_reads_but_its_writes_get_403_and_write_nothing(
    tenant_a: TenantFixture, client: Client
) -> None:
    assert post(client, tenant_a.key).status_code == 200
    read_only = cli("apikey", "create", "--tenant", str(tenant_a.id), "--read-only").strip()
    response = post(client, read_only)
    assert response.status_code == 403
    assert orjson.loads(response.content)["error"]["code"] == "read_only_key"
    answer = get(client, read_only)
    assert answer.status_code == 200
    assert len(orjson.loads(answer.content)["data"]) == 1


def test_an_expired_key_gets_401(tenant_a: TenantFixture, client: Client) -> None:
    tenant = Tenant.objects.get(id=tenant_a.id)
    key = keys.create_key(tenant, expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert get(client, key).status_code == 404  # live: the series is simply unknown
    ApiKey.objects.filter(key_hash=keys.hash_key(key)).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert get(client, key).status_code == 401
    assert post(client, key).status_code == 401


def test_apikey_create_refuses_an_expiry_without_offset_or_in_the_past(
    tenant_a: TenantFixture,
) -> None:
    with pytest.raises(CommandError, match="offset"):
        cli("apikey", "create", "--tenant", str(tenant_a.id), "--expires", "2099-01-01T00:00")
    with pytest.raises(CommandError, match="past"):
        cli("apikey", "create", "--tenant", str(tenant_a.id), "--expires", "2001-01-01T00:00Z")
    out = cli("apikey", "create", "--tenant", str(tenant_a.id), "--expires", "2099-01-01T00:00Z")
    row = ApiKey.objects.get(key_hash=keys.hash_key(out.strip()))
    assert row.expires_at == datetime(2099, 1, 1, tzinfo=UTC)


def test_last_used_is_noted_on_use(tenant_a: TenantFixture, client: Client) -> None:
    row = ApiKey.objects.get(key_hash=keys.hash_key(tenant_a.key))
    assert row.last_used_at is None
    keys._noted.pop(row.id, None)
    assert get(client, tenant_a.key).status_code == 404
    row.refresh_from_db()
    assert row.last_used_at is not None
    listing = cli("apikey", "list", "--tenant", str(tenant_a.id))
    assert row.last_used_at.isoformat(timespec="seconds") in listing


def test_a_key_used_on_another_tenants_series_gets_404_and_is_audited(
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
    client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert post(client, tenant_b.key).status_code == 200  # B's series
    before = CROSS_TENANT_REFUSED._value.get()
    with caplog.at_level(logging.WARNING, logger="traksense.audit"):
        response = get(client, tenant_a.key)
        unknown = get(client, tenant_a.key, device=str(uuid.uuid4()))
    assert response.status_code == unknown.status_code == 404
    # The answers are alike: nothing tells A that the first series exists.
    assert orjson.loads(response.content)["error"]["code"] == "not_found"
    assert CROSS_TENANT_REFUSED._value.get() == before + 1
    lines = [r.message for r in caplog.records if "cross_tenant_refused" in r.message]
    assert len(lines) == 1
    assert str(tenant_a.id) in lines[0] and DEV in lines[0] and str(tenant_b.id) not in lines[0]


def test_the_key_is_checked_by_the_database_not_only_by_prefix(
    tenant_a: TenantFixture, client: Client
) -> None:
    forged = tenant_a.key[:-1] + ("A" if tenant_a.key[-1] != "A" else "B")
    assert get(client, forged).status_code == 401
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM api_key WHERE key_hash = %s", [keys.hash_key(forged)])
        assert cursor.fetchone() == (0,)


def test_who_asks_is_answered_before_what_is_wrong_with_the_batch(
    tenant_a: TenantFixture, client: Client
) -> None:
    # A malformed batch is a 400 for a key that may write, but a 401 for a key that is not
    # live and a 403 for a read-only key: the caller learns first that it may not write.
    def bad_post(key: str) -> Any:
        return client.post(
            "/data/points",
            data=b'{"samples": [{"device_id": "not-a-uuid"}]}',
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {key}",
        )

    assert bad_post(tenant_a.key).status_code == 400
    read_only = cli("apikey", "create", "--tenant", str(tenant_a.id), "--read-only").strip()
    response = bad_post(read_only)
    assert response.status_code == 403
    assert orjson.loads(response.content)["error"]["code"] == "read_only_key"
    revoked = keys.create_key(Tenant.objects.get(id=tenant_a.id))
    ApiKey.objects.filter(key_hash=keys.hash_key(revoked)).update(revoked_at=datetime.now(UTC))
    response = bad_post(revoked)
    assert response.status_code == 401
    assert orjson.loads(response.content)["error"]["code"] == "unauthorized"
