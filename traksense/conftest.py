"""Shared fixtures. Every test talks to a real PostgreSQL: the embedded one when DATABASE_URL is
unset, else the server it names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from hypothesis import settings as hypothesis_settings

from traksense.points import split
from traksense.tenancy.keys import create_key
from traksense.tenancy.models import Tenant

# CI (CI=true) replays the same generated examples on every run, so that a red build always names
# a reproducible case; developers' runs keep exploring new examples.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() == "true":
    hypothesis_settings.load_profile("ci")

# Tables that Django's flush does not know about (they are not models).
TIMESERIES_TABLES = (
    "ts_measure, ts_measure_1m, ts_measure_5m, ts_measure_1h, ts_invalidation, ts_series"
)


@dataclass
class TenantFixture:
    id: uuid.UUID
    key: str
    client: Client

    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}"}


@pytest.fixture
def make_tenant(db: None) -> Callable[[str], TenantFixture]:
    def make(name: str = "tenant") -> TenantFixture:
        tenant = Tenant.objects.create(name=name)
        key = create_key(tenant)
        client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
        return TenantFixture(id=tenant.id, key=key, client=client)

    return make


@pytest.fixture
def tenant_a(make_tenant: Callable[[str], TenantFixture]) -> TenantFixture:
    return make_tenant("tenant A")


@pytest.fixture
def tenant_b(make_tenant: Callable[[str], TenantFixture]) -> TenantFixture:
    return make_tenant("tenant B")


@pytest.fixture
def outsider(make_tenant: Callable[[str], TenantFixture]) -> TenantFixture:
    """A tenant that owns nothing the test writes: it must never see or touch anything."""
    return make_tenant("outsider")


@pytest.fixture(autouse=True, scope="session")
def _web_alias_on_the_test_database(django_db_setup: None) -> None:
    """The "web" alias (the web role's login) names the same database as "default": Django
    renames only the aliases a test lists, so it is pointed at the test database here."""
    connections["web"].settings_dict["NAME"] = connections["default"].settings_dict["NAME"]


@pytest.fixture(autouse=True)
def _api_on_the_test_connection(request: pytest.FixtureRequest, settings: Any) -> None:
    """The API's request path runs on the web role's own connection ("web"), which cannot see
    what a test wrote in its uncommitted transaction: such tests run it on the owner's ("default",
    the same binding by key, the same switch to app_user). Tests that request `web_api` keep
    the web role's connection, with committed data."""
    if "web_api" not in request.fixturenames:
        settings.API_DATABASE = "default"


@pytest.fixture
def web_api(committed_db: None) -> None:
    """The API's request path on the web role's connection (settings.API_DATABASE = "web"),
    as in production: for tests whose data is committed."""


@pytest.fixture
def committed_db(transactional_db: None) -> Iterator[None]:
    """For tests whose work must really commit (threads, subprocesses, crash tests). Django's
    flush empties only model tables afterwards, so the time-series tables are emptied here."""
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TIMESERIES_TABLES} RESTART IDENTITY")
        cursor.execute(
            "UPDATE ts_tier SET watermark = '-infinity', expired_before = '-infinity',"
            " dirty_until = '-infinity'"
        )
        cursor.execute("UPDATE ts_invalidation_threshold SET threshold = '-infinity'")
        # Compressed stores are partitions of their own, outside the TRUNCATE: a test that
        # compressed leaves none behind (a later refresh would find compressed ranges).
        cursor.execute(
            "SELECT ts_drop_compressed(name) FROM ts_partition WHERE compressed_at IS NOT NULL"
        )
        cursor.execute("UPDATE ts_partition SET compressed_at = NULL")


@pytest.fixture(autouse=True, scope="session")
def _close_read_helper(django_db_setup: None) -> Iterator[None]:
    """A page read in halves leaves this process a helper connection to the test database
    (traksense/points/split.py): closed before the database is dropped."""
    yield
    split.close_helper()
