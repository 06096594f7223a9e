"""`traksense storage` (issue 18 part 5): rows, bytes, bytes per row, compressed share and the
projected size per tier, from the catalog and the compressed stores. Real PostgreSQL."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from typing import Any

import orjson
import pytest
from django.core.management import call_command
from django.db import connection
from django.db.utils import ProgrammingError

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.rollups.jobs import db_now
from traksense.rollups.storage import held_days
from traksense.rollups.test_refresh_support import ingest, new_id

pytestmark = pytest.mark.django_db


def test_held_days_count_half_a_partition_of_waiting_and_of_dropping() -> None:
    assert held_days(14, 2, 1) == (2.5, 12.0)
    assert held_days(365, 7, 1) == (7.5, 358.0)
    assert held_days(14, 0, 1) == (14.5, 0.0)  # never compressed
    assert held_days(3, 7, 7) == (6.5, 0.0)  # dropped before it would be compressed
    assert held_days(0, 7, 1)[1] == float("inf")  # kept forever


def storage_json() -> dict[str, dict[str, Any]]:
    out = StringIO()
    call_command("storage", "--json", stdout=out)
    return {t["tier"]: t for t in orjson.loads(out.getvalue())["tiers"]}


def test_storage_counts_both_forms_and_projects_the_retention(
    tenant_a: TenantFixture, tenant_b: TenantFixture, settings: Any
) -> None:
    today = db_now().replace(hour=0, minute=0, second=0, microsecond=0)
    three_days_ago, yesterday = today - dt.timedelta(days=3), today - dt.timedelta(days=1)
    for tenant, base in ((tenant_a, 1.0), (tenant_b, 1000.0)):
        device, point = new_id(), new_id()
        ingest(
            tenant.id,
            [
                (device, point, three_days_ago + dt.timedelta(minutes=m), base + m)
                for m in range(300)
            ]
            + [(device, point, yesterday + dt.timedelta(minutes=m), base) for m in range(100)],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE ts_measure")
        cursor.execute(
            "SELECT ts_compress_partition(name) FROM ts_partition WHERE tier = 'raw' AND lo = %s",
            [three_days_ago],
        )
    raw = storage_json()["raw"]
    assert raw["rows"] == 800 and raw["compressed_rows"] == 600
    assert raw["compressed_share"] == 0.75
    assert raw["compressed_bytes"] > 0 and raw["bytes"] > raw["compressed_bytes"]
    assert raw["bytes_per_row"] == raw["bytes"] / 800
    # The newest ended raw partition (yesterday's, uncompressed) holds 200 samples.
    assert raw["rows_per_day"] == 200
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sum(pg_total_relation_size(name::regclass)) FROM ts_partition"
            " WHERE tier = 'raw' AND to_regclass(name) IS NOT NULL"
        )
        plain_bytes = int(cursor.fetchone()[0])
    plain_days, packed_days = held_days(14, 2, 1)
    assert raw["projected_bytes"] == pytest.approx(
        200 * (plain_days * plain_bytes / 200 + packed_days * raw["compressed_bytes"] / 600)
    )
    # Raw compression off: the tier is projected uncompressed for its whole retention.
    settings.COMPRESS_AFTER_DAYS = {
        t: d for t, d in settings.COMPRESS_AFTER_DAYS.items() if t != "raw"
    }
    assert storage_json()["raw"]["projected_bytes"] == pytest.approx(200 * 14.5 * plain_bytes / 200)

    out = StringIO()
    call_command("storage", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "tier",
        "rows",
        "bytes",
        "B/row",
        "compressed",
        "rows/day",
        "projected",
    ]
    assert [line.split()[0] for line in lines[1:5]] == ["raw", "1m", "5m", "1h"]
    assert lines[1].split()[1] == "800" and "75%" in lines[1]
    assert lines[-1].startswith("projected total at today's rates")


def test_a_tenant_cannot_read_the_storage_figures(tenant_a: TenantFixture) -> None:
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        tenant_context(tenant_a.id) as cursor,
    ):
        cursor.execute("SELECT * FROM ts_storage()")
