"""The `traksense refresh` command: progress, summary and clear errors."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from traksense.conftest import TenantFixture
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    materialize_until,
    materialized,
    new_id,
    reference,
)

pytestmark = pytest.mark.django_db
T0 = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("refresh", *args, stdout=out)
    return out.getvalue()


def test_it_prints_progress_and_a_summary(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    materialize_until(T0 + dt.timedelta(minutes=30))  # late data, logged: chunks of 10 keys
    ingest(tenant_a.id, [(d, p, T0 + dt.timedelta(minutes=m), 1.5) for m in range(30)])
    output = run("--tier", "1m", "--chunk-keys", "10", "--end", "2026-03-10T10:30:00Z")
    assert "chunk 1/3" in output and "chunk 3/3" in output
    assert "30 buckets recomputed, 30 rows written, 0 rows deleted" in output
    assert_equal_aggregates(materialized("1m"), reference("1m"))


def test_it_refreshes_an_explicit_window(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    materialize_until(T0)  # a window starting at the watermark keeps its start
    ingest(tenant_a.id, [(d, p, T0 + dt.timedelta(minutes=m), 1.5) for m in range(30)])
    output = run("--tier", "1m", "--start", "2026-03-10T10:00:00Z", "--end", "2026-03-10T10:10Z")
    assert "[2026-03-10T10:00:00+00:00, 2026-03-10T10:10:00+00:00)" in output
    assert "10 buckets recomputed" in output


def test_it_rejects_a_timestamp_without_offset(db: None) -> None:
    with pytest.raises(CommandError, match="no UTC offset"):
        run("--tier", "1m", "--start", "2026-03-10T10:00:00")


def test_it_rejects_a_malformed_timestamp(db: None) -> None:
    with pytest.raises(CommandError, match="ISO-8601"):
        run("--tier", "5m", "--end", "yesterday")


def test_it_rejects_an_unknown_tier(db: None) -> None:
    with pytest.raises(CommandError):
        run("--tier", "2m")
