"""GET /data/points?agg=1d|1w|1mo&tz=: calendar buckets in a time zone, against a recompute
from the samples in Python (zoneinfo), across DST changes in several zones."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db.utils import ProgrammingError

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.points.test_query import post
from traksense.points.test_read import get, ingest, series_id_of, window
from traksense.rollups.refresh import refresh
from traksense.tenancy.models import Tenant

Sample = tuple[datetime, float]


def last_transition(zone: str, before: datetime) -> datetime:
    """The latest instant before `before` at which `zone`'s UTC offset changed (to the hour)."""
    tz = ZoneInfo(zone)
    t = before.replace(minute=0, second=0, microsecond=0)
    offset = t.astimezone(tz).utcoffset()
    for _ in range(24 * 400):
        t -= timedelta(hours=1)
        if t.astimezone(tz).utcoffset() != offset:
            return t + timedelta(hours=1)
    raise AssertionError(f"{zone} changed no offset in 400 days")


def irregular(lo: datetime, hi: datetime, seed: int, most_gap_min: int = 40) -> list[Sample]:
    """Samples at irregular instants (gaps of 1 s to `most_gap_min` minutes) with 2-decimal
    values, one of them exactly at lo."""
    rng = random.Random(seed)
    samples, t = [], lo
    while t < hi:
        samples.append((t, round(rng.uniform(-50, 150), 2)))
        t += timedelta(seconds=rng.randint(1, most_gap_min * 60))
    return samples


def local_start(unit: str, t: datetime, tz: ZoneInfo) -> datetime:
    """The UTC start of the local day, ISO week or month holding t."""
    d = t.astimezone(tz).date()
    if unit == "week":
        d -= timedelta(days=d.weekday())
    elif unit == "month":
        d = d.replace(day=1)
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def recompute(
    samples: Iterable[Sample], unit: str, zone: str, lo: datetime, hi: datetime
) -> list[dict[str, Any]]:
    """Calendar buckets starting in [lo, hi), each over all of its samples."""
    tz = ZoneInfo(zone)
    groups: dict[datetime, list[float]] = {}
    for t, v in samples:
        groups.setdefault(local_start(unit, t, tz), []).append(v)
    return [
        {"ts": b.isoformat(), "v_min": min(vs), "v_max": max(vs), "n": len(vs), "v_avg": vs}
        for b, vs in sorted(groups.items())
        if lo <= b < hi
    ]


def assert_rows(actual: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> None:
    assert [r["ts"] for r in actual] == [w["ts"] for w in wanted]
    for row, want in zip(actual, wanted, strict=True):
        assert (row["n"], row["v_min"], row["v_max"]) == (want["n"], want["v_min"], want["v_max"])
        assert row["v_avg"] == pytest.approx(sum(want["v_avg"]) / want["n"], rel=1e-12, abs=1e-9)


def calendar(tenant: TenantFixture, **params: Any) -> dict[str, Any]:
    response = get(tenant, **params)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = orjson.loads(response.content)
    return body


def refresh_tiers(lo: datetime, hi: datetime) -> None:
    for tier in ("1m", "5m", "1h"):
        refresh(tier, lo - timedelta(days=1), hi + timedelta(days=1))


Loaded = tuple[uuid.UUID, uuid.UUID, datetime, datetime, list[Sample]]


def loaded(tenant: TenantFixture, zone: str, days_back: int, days: int, seed: int) -> Loaded:
    """A new series of irregular samples over `days` whole local days of `zone` starting
    `days_back` days ago, refreshed on every tier: (device, point, lo, hi, samples)."""
    lo = local_start("day", datetime.now(UTC) - timedelta(days=days_back), ZoneInfo(zone))
    hi = local_start("day", lo + timedelta(days=days, hours=12), ZoneInfo(zone))
    samples = irregular(lo, hi, seed=seed)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant, device, point, samples)
    refresh_tiers(lo, hi)
    return device, point, lo, hi, samples


def days_of(tenant: TenantFixture, series: Loaded, zone: str) -> dict[str, Any]:
    device, point, lo, hi, _ = series
    return calendar(tenant, device_id=device, point_id=point, agg="1d", tz=zone, **window(lo, hi))


# Zones with DST in both hemispheres, whole-hour and half-hour offsets, and the tier whose
# buckets their midnights fall on.
ZONES = [
    ("Europe/Berlin", "1h"),
    ("America/New_York", "1h"),
    ("Australia/Adelaide", "5m"),
]


@pytest.mark.parametrize(("zone", "source"), ZONES)
@pytest.mark.parametrize("refreshed", [False, True], ids=["real-time", "refreshed"])
def test_days_across_a_dst_change_equal_a_recompute_from_the_samples(
    tenant_a: TenantFixture, zone: str, source: str, refreshed: bool
) -> None:
    change = last_transition(zone, datetime.now(UTC) - timedelta(days=3))
    tz = ZoneInfo(zone)
    # Whole local days around the change; the first sample exactly at a local midnight.
    lo = local_start("day", change - timedelta(days=3), tz)
    hi = local_start("day", change + timedelta(days=3), tz)
    samples = irregular(lo, hi + timedelta(hours=6), seed=hash(zone) % 1000)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    if refreshed:
        refresh_tiers(lo, hi)
    body = calendar(tenant_a, device_id=device, point_id=point, agg="1d", tz=zone, **window(lo, hi))
    assert (body["agg"], body["tz"], body["source_tier"]) == ("1d", zone, source)
    assert "degraded_from" not in body
    wanted = recompute(samples, "day", zone, lo, hi)
    assert len(wanted) == 6
    # The day of the change is 23 or 25 hours long.
    lengths = {
        datetime.fromisoformat(b["ts"]) - datetime.fromisoformat(a["ts"])
        for a, b in zip(wanted, wanted[1:], strict=False)
    }
    assert len(lengths) == 2
    assert_rows(body["data"], wanted)


@pytest.mark.parametrize(("agg", "unit"), [("1w", "week"), ("1mo", "month")])
@pytest.mark.parametrize("zone", ["Europe/Berlin", "Australia/Adelaide"])
def test_weeks_start_on_monday_and_months_on_the_first_at_local_midnight(
    tenant_a: TenantFixture, agg: str, unit: str, zone: str
) -> None:
    change = last_transition(zone, datetime.now(UTC) - timedelta(days=3))
    lo, hi = change - timedelta(days=40), change + timedelta(days=2)
    samples = irregular(lo, hi, seed=7, most_gap_min=240)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    refresh_tiers(lo, hi)
    body = calendar(tenant_a, device_id=device, point_id=point, agg=agg, tz=zone, **window(lo, hi))
    wanted = recompute(samples, unit, zone, lo, hi)
    assert len(wanted) >= 1
    for row in wanted:
        start = datetime.fromisoformat(row["ts"]).astimezone(ZoneInfo(zone))
        assert (start.hour, start.minute) == (0, 0)
        assert start.weekday() == 0 if unit == "week" else start.day == 1
    assert_rows(body["data"], wanted)


def test_a_late_sample_moves_its_day_after_the_refresh(tenant_a: TenantFixture) -> None:
    zone = "America/Sao_Paulo"
    series = device, point, lo, hi, samples = loaded(tenant_a, zone, 20, 4, seed=11)
    late = [(lo + timedelta(days=1, hours=23, minutes=59, seconds=59), 1000.0)]
    ingest(tenant_a, device, point, late)
    refresh_tiers(lo, hi)
    body = days_of(tenant_a, series, zone)
    assert_rows(body["data"], recompute(samples + late, "day", zone, lo, hi))
    assert body["data"][1]["v_max"] == 1000.0


def test_a_zone_off_whole_hours_is_summed_from_5m(tenant_a: TenantFixture) -> None:
    zone = "Asia/Kolkata"
    series = _, _, lo, hi, samples = loaded(tenant_a, zone, 10, 3, seed=3)
    body = days_of(tenant_a, series, zone)
    assert body["source_tier"] == "5m"
    assert lo.minute == 30  # 18:30 UTC
    assert_rows(body["data"], recompute(samples, "day", zone, lo, hi))


def test_beyond_the_aligned_tiers_days_come_from_1h_and_the_answer_says_so(
    tenant_a: TenantFixture,
) -> None:
    # Asia/Kolkata 800 days back: 5m (730 days) no longer covers it; 1h (1825 days) does, and
    # its hours then count in the local day they start in (19:00 UTC = 00:30 local).
    zone = "Asia/Kolkata"
    series = _, _, lo, hi, samples = loaded(tenant_a, zone, 800, 2, seed=5)
    body = days_of(tenant_a, series, zone)
    assert body["source_tier"] == "1h"
    assert (body["degraded_from"], body["degraded_to"]) == ("5m", "1h")
    assert "730 days" in body["reason"]
    by_hour = [(t.replace(minute=0, second=0, microsecond=0), v) for t, v in samples]
    assert_rows(body["data"], recompute(by_hour, "day", zone, lo, hi))


def test_without_tz_the_tenants_zone_applies_else_utc(tenant_a: TenantFixture) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lo, hi = day - timedelta(days=5), day - timedelta(days=2)
    samples = irregular(lo, hi, seed=9)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    ask = {"device_id": device, "point_id": point, "agg": "1d", **window(lo, hi)}
    body = calendar(tenant_a, **ask)
    assert body["tz"] == "UTC"
    assert_rows(body["data"], recompute(samples, "day", "UTC", lo, hi))

    call_command("tenant", "set", str(tenant_a.id), "--tz", "America/Sao_Paulo")
    assert Tenant.objects.get(id=tenant_a.id).tz == "America/Sao_Paulo"
    body = calendar(tenant_a, **ask)
    assert body["tz"] == "America/Sao_Paulo"
    assert_rows(body["data"], recompute(samples, "day", "America/Sao_Paulo", lo, hi))
    # An explicit tz wins over the tenant's.
    assert calendar(tenant_a, tz="Asia/Tokyo", **ask)["tz"] == "Asia/Tokyo"
    call_command("tenant", "set", str(tenant_a.id), "--tz", "")
    assert calendar(tenant_a, **ask)["tz"] == "UTC"


def test_tenant_set_refuses_a_zone_postgresql_does_not_know(tenant_a: TenantFixture) -> None:
    for bad in ("Mars/Olympus_Mons", "CET+1", "EST", "cet", "Atlantis", "UTC3"):
        with pytest.raises(CommandError, match="IANA time zone"):
            call_command("tenant", "set", str(tenant_a.id), "--tz", bad)
    assert Tenant.objects.get(id=tenant_a.id).tz == ""


def test_a_single_word_zone_of_the_tz_database_is_a_zone(tenant_a: TenantFixture) -> None:
    # Japan (a tz database link to Asia/Tokyo) is not an abbreviation: its days are Tokyo's.
    call_command("tenant", "set", str(tenant_a.id), "--tz", "Japan")
    assert Tenant.objects.get(id=tenant_a.id).tz == "Japan"
    call_command("tenant", "set", str(tenant_a.id), "--tz", "")
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lo, hi = day - timedelta(days=4), day - timedelta(days=1)
    samples = irregular(lo, hi, seed=21)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    ask = {"device_id": device, "point_id": point, "agg": "1d", **window(lo, hi)}
    japan = calendar(tenant_a, tz="Japan", **ask)
    assert japan["tz"] == "Japan"
    assert japan["data"] and japan["data"] == calendar(tenant_a, tz="Asia/Tokyo", **ask)["data"]
    assert_rows(japan["data"], recompute(samples, "day", "Asia/Tokyo", lo, hi))


def test_pages_of_days_follow_one_another(tenant_a: TenantFixture) -> None:
    zone = "Europe/Berlin"
    tz = ZoneInfo(zone)
    lo = local_start("day", datetime.now(UTC) - timedelta(days=12), tz)
    hi = local_start("day", lo + timedelta(days=7, hours=12), tz)
    samples = irregular(lo, hi, seed=13)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    params: dict[str, Any] = {
        "device_id": device,
        "point_id": point,
        "agg": "1d",
        "tz": zone,
        "limit": 3,
        **window(lo, hi),
    }
    rows: list[dict[str, Any]] = []
    body = calendar(tenant_a, **params)
    pages = 1
    while "next" in body:
        rows += body["data"]
        response = tenant_a.client.get(body["next"])
        assert response.status_code == 200, response.content
        body = orjson.loads(response.content)
        pages += 1
    rows += body["data"]
    assert pages == 3
    assert_rows(rows, recompute(samples, "day", zone, lo, hi))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"agg": "1d", "tz": "Nowhere/Atlantis"}, "IANA time zone"),
        ({"agg": "1d", "tz": "+03:00"}, "IANA time zone"),
        ({"agg": "1h", "tz": "Europe/Berlin"}, "calendar buckets only"),
        ({"agg": "1d", "tz": ""}, "IANA time zone"),
        ({"agg": "2d"}, "'agg' must be one of"),
    ],
)
def test_bad_calendar_queries_are_400_naming_the_problem(
    tenant_a: TenantFixture, params: dict[str, str], message: str
) -> None:
    device, point, t = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC) - timedelta(days=2)
    ingest(tenant_a, device, point, [(t, 1.0)])
    response = get(
        tenant_a, device_id=device, point_id=point, **params, **window(t, t + timedelta(days=1))
    )
    assert response.status_code == 400, response.content
    assert message in orjson.loads(response.content)["error"]["message"]


def test_run_hours_per_local_day_sum_the_hours_state_rows(tenant_a: TenantFixture) -> None:
    # A compressor on/off point polled irregularly across a Berlin DST change: each local
    # day's true_s, n and changes are those of its hours (test_state_rollups checks the hours
    # against the definition), its first and last those of its first and last sample.
    zone = "Europe/Berlin"
    tz = ZoneInfo(zone)
    change = last_transition(zone, datetime.now(UTC) - timedelta(days=3))
    lo = local_start("day", change - timedelta(days=1), tz)
    hi = local_start("day", change + timedelta(days=2), tz)
    rng = random.Random(17)
    samples, t = [], lo - timedelta(minutes=3)
    while t < hi + timedelta(hours=1):
        samples.append((t, rng.random() < 0.6))
        t += timedelta(seconds=rng.choice([rng.randint(20, 300), rng.randint(700, 3000)]))
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    refresh_tiers(lo, hi)
    ask: dict[str, Any] = {"device_id": device, "point_id": point, **window(lo, hi)}
    days = calendar(tenant_a, agg="1d", tz=zone, **ask)
    assert days["source_tier"] == "1h"
    hours = calendar(tenant_a, agg="1h", **ask)["data"]
    wanted = []
    for b in sorted({local_start("day", datetime.fromisoformat(h["ts"]), tz) for h in hours}):
        mine = [h for h in hours if local_start("day", datetime.fromisoformat(h["ts"]), tz) == b]
        firsts = [h["first"] for h in mine if h["first"] is not None]
        lasts = [h["last"] for h in mine if h["last"] is not None]
        wanted.append(
            {
                "ts": b.isoformat(),
                "first": firsts[0],
                "last": lasts[-1],
                "changes": sum(h["changes"] for h in mine),
                "n": sum(h["n"] for h in mine),
                "true_s": pytest.approx(sum(h["true_s"] for h in mine)),
            }
        )
    assert len(wanted) == 3
    assert days["data"] == wanted
    day_lengths = {
        (datetime.fromisoformat(b["ts"]) - datetime.fromisoformat(a["ts"])).total_seconds()
        for a, b in zip(days["data"], days["data"][1:], strict=False)
    }
    assert len(day_lengths) == 2  # 23 or 25 hours, and 24


def test_post_query_answers_calendar_buckets_per_series(tenant_a: TenantFixture) -> None:
    zone = "Europe/Berlin"
    tz = ZoneInfo(zone)
    lo = local_start("day", datetime.now(UTC) - timedelta(days=6), tz)
    hi = lo + timedelta(days=3)
    device, points = uuid.uuid4(), [uuid.uuid4(), uuid.uuid4()]
    series = {p: irregular(lo, hi, seed=i) for i, p in enumerate(points)}
    for p, samples in series.items():
        ingest(tenant_a, device, p, samples)
    body: dict[str, Any] = {**window(lo, hi)}
    response = post(
        tenant_a,
        {
            **body,
            "agg": "1d",
            "tz": zone,
            "series": [{"device_id": str(device), "point_id": str(p)} for p in points],
        },
    )
    assert response.status_code == 200, response.content
    results = orjson.loads(response.content)["results"]
    for p, result in zip(points, results, strict=True):
        assert (result["point_id"], result["tz"], result["source_tier"]) == (str(p), zone, "1h")
        assert_rows(result["data"], recompute(series[p], "day", zone, lo, hi))


def test_another_tenants_series_has_no_calendar_buckets(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lo, hi = day - timedelta(days=4), day - timedelta(days=2)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, irregular(lo, hi, seed=1))
    Tenant.objects.filter(id=tenant_a.id).update(tz="Asia/Tokyo")
    ask: dict[str, Any] = {"device_id": device, "point_id": point, "agg": "1d", **window(lo, hi)}
    assert get(tenant_b, **ask).status_code == 404
    assert calendar(tenant_a, **ask)["data"]
    series_id = series_id_of(tenant_a, device, point)
    # The SQL functions themselves, in tenant B's transaction, with A's series id: nothing, and
    # B's own zone (not A's).
    with tenant_context(tenant_b.id) as cur:
        for tier in ("1m", "5m", "1h"):
            cur.execute(
                f"SELECT count(*) FROM ts_read_calendar_{tier}(%s, 'day', 'UTC', %s, %s, 1000)",
                [series_id, lo, hi],
            )
            assert cur.fetchone() == (0,)
            cur.execute(
                f"SELECT count(*) FROM ts_read_calendar_state_{tier}"
                "(%s, 'day', 'UTC', %s, %s, 1000)",
                [series_id, lo, hi],
            )
            assert cur.fetchone() == (0,)
        cur.execute("SELECT ts_tenant_tz()")
        assert cur.fetchone() == (None,)


def test_the_web_role_cannot_read_another_tenants_zone_from_sql(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    Tenant.objects.filter(id=tenant_a.id).update(tz="Asia/Tokyo")
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        tenant_context(tenant_b.id) as cur,
    ):
        cur.execute("SELECT tz FROM tenant")
