"""The API's request path logs in as the web role, end to end over HTTP (issue 20: it used to
log in as the owner, a superuser when DATABASE_URL named postgres)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from django.db import connections

from traksense.conftest import TenantFixture
from traksense.db.webrole import web_role, web_role_problems

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "web"])


def test_requests_run_on_the_web_role_which_writes_and_reads_its_tenant_only(
    web_api: None, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    device, point = str(uuid.uuid4()), str(uuid.uuid4())
    ts = (datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)).isoformat()
    body = orjson.dumps(
        {"samples": [{"device_id": device, "point_id": point, "ts": ts, "value": 2.5}]}
    )
    posted = tenant_a.client.post("/data/points", data=body, content_type="application/json")
    assert posted.status_code == 200, posted.content
    query = {
        "device_id": device,
        "point_id": point,
        "start": ts,
        "end": datetime.now(UTC).isoformat(),
    }
    answer = tenant_a.client.get("/data/points", query)
    assert answer.status_code == 200
    assert [row["v"] for row in orjson.loads(answer.content)["data"]] == [2.5]
    assert tenant_b.client.get("/data/points", query).status_code == 404
    with connections["web"].cursor() as cursor:
        cursor.execute("SELECT session_user::text, current_user::text")
        assert cursor.fetchone() == (web_role(), web_role())
    assert connections["default"].settings_dict["USER"] != web_role()
    assert web_role_problems() == []
