"""Counters (issue 19): a numeric point marked with `traksense point set --counter` gets `delta`
per bucket on every tier and per local day, against a recompute from the samples."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from django.core.management import CommandError, call_command

from traksense.conftest import TenantFixture
from traksense.db.context import tenant_context
from traksense.points import queries
from traksense.points.test_read import get, ingest, series_id_of, window
from traksense.rollups.test_state_rollups import WIDTH, floor, refresh_all_tiers, start_hour

Sample = tuple[datetime, float]


def step(previous: float, value: float) -> float:
    return value - previous if value >= previous else value


def recompute(samples: Sequence[Sample], bucket_of: Any) -> dict[datetime, float]:
    """delta per bucket: each sample's increase over the one before it (any bucket), a decrease
    counted as a reset to zero; the first sample of the series adds nothing."""
    ordered = sorted(samples)
    deltas: dict[datetime, float] = {}
    for i, (t, v) in enumerate(ordered):
        b = bucket_of(t)
        deltas[b] = deltas.get(b, 0.0) + (step(ordered[i - 1][1], v) if i else 0.0)
    return deltas


def meter(lo: datetime, hi: datetime, seed: int) -> list[Sample]:
    """An energy meter read at irregular times, replaced (reset to a small value) once."""
    rng = random.Random(seed)
    samples, t, total = [], lo, 1000.0
    reset_at = lo + (hi - lo) * 0.6
    while t < hi:
        samples.append((t, round(total, 3)))
        gap = timedelta(seconds=rng.choice([rng.randint(5, 90), rng.randint(90, 1200)]))
        total += rng.uniform(0, 2.5) * gap.total_seconds() / 60
        if t < reset_at <= t + gap:
            total = rng.uniform(0, 3)
        t += gap
    return samples


def mark(tenant: TenantFixture, device: uuid.UUID, point: uuid.UUID, on: bool = True) -> str:
    flag = "--counter" if on else "--no-counter"
    call_command(
        "point",
        "set",
        "--tenant",
        str(tenant.id),
        "--device",
        str(device),
        "--point",
        str(point),
        flag,
    )
    queries._SERIES_CACHE.clear()  # this process's cache: what another one sees after 30 s
    return flag


def body(tenant: TenantFixture, **params: Any) -> dict[str, Any]:
    response = get(tenant, **params)
    assert response.status_code == 200, response.content
    answer: dict[str, Any] = orjson.loads(response.content)
    return answer


@pytest.mark.parametrize("tier", ["1m", "5m", "1h"])
@pytest.mark.parametrize("marked_first", [False, True], ids=["marked-after", "marked-before"])
@pytest.mark.parametrize("refreshed", [False, True], ids=["real-time", "refreshed"])
def test_delta_per_bucket_equals_a_recompute_with_resets(
    tenant_a: TenantFixture, tier: str, marked_first: bool, refreshed: bool
) -> None:
    lo = start_hour()
    hi = lo + timedelta(hours=5)
    samples = meter(lo, hi, seed=len(tier))
    device, point = uuid.uuid4(), uuid.uuid4()
    if marked_first:
        ingest(tenant_a, device, point, samples[:1])
        mark(tenant_a, device, point)
        ingest(tenant_a, device, point, samples[1:])
    else:
        ingest(tenant_a, device, point, samples)
        if refreshed:
            refresh_all_tiers(
                lo, hi
            )  # materialized before the mark: the mark's invalidations redo it
        mark(tenant_a, device, point)
    if refreshed:
        refresh_all_tiers(lo, hi)
    w_lo, w_hi = lo + timedelta(minutes=20), hi - timedelta(minutes=40)
    rows = body(tenant_a, device_id=device, point_id=point, agg=tier, **window(w_lo, w_hi))["data"]
    wanted = recompute(samples, lambda t: floor(t, WIDTH[tier]))
    assert rows and [r["ts"] for r in rows] == [
        b.isoformat() for b in sorted(wanted) if w_lo <= b < w_hi
    ]
    for row in rows:
        assert row["delta"] == pytest.approx(wanted[datetime.fromisoformat(row["ts"])], abs=1e-6)
        assert {"v_avg", "v_min", "v_max", "n"} <= set(row)
    # The reset shows as a step up from zero, never as a negative delta.
    assert min(r["delta"] for r in rows) >= 0
    total = sum(step(a[1], b[1]) for a, b in zip(samples, samples[1:], strict=False))
    assert sum(wanted.values()) == pytest.approx(total)


def test_daily_energy_in_local_time(tenant_a: TenantFixture) -> None:
    zone = "America/Sao_Paulo"
    tz = ZoneInfo(zone)
    day = datetime.now(UTC).astimezone(tz).date() - timedelta(days=6)
    lo = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    hi = lo + timedelta(days=3)
    samples = meter(lo, hi + timedelta(hours=2), seed=4)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    mark(tenant_a, device, point)
    refresh_all_tiers(lo, hi)

    def local_day(t: datetime) -> datetime:
        d = t.astimezone(tz).date()
        return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)

    answer = body(tenant_a, device_id=device, point_id=point, agg="1d", tz=zone, **window(lo, hi))
    wanted = recompute(samples, local_day)
    assert [r["ts"] for r in answer["data"]] == [
        b.isoformat() for b in sorted(wanted) if lo <= b < hi
    ]
    for row in answer["data"]:
        assert row["delta"] == pytest.approx(wanted[datetime.fromisoformat(row["ts"])], abs=1e-6)


def test_unmarking_drops_delta_and_csv_has_a_delta_column(tenant_a: TenantFixture) -> None:
    lo = start_hour()
    samples = meter(lo, lo + timedelta(hours=1), seed=9)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    mark(tenant_a, device, point)
    refresh_all_tiers(lo, lo + timedelta(hours=1))
    ask: dict[str, Any] = {
        "device_id": device,
        "point_id": point,
        "agg": "1h",
        **window(lo, lo + timedelta(hours=1)),
    }
    response = get(tenant_a, format="csv", **ask)
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "ts,v_avg,v_min,v_max,n,delta"
    total = sum(step(a[1], b[1]) for a, b in zip(samples, samples[1:], strict=False))
    assert float(lines[1].split(",")[5]) == pytest.approx(total)
    mark(tenant_a, device, point, on=False)
    (row,) = body(tenant_a, **ask)["data"]
    assert "delta" not in row


def test_only_a_numeric_point_of_the_tenant_can_be_marked(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    t = start_hour()
    device, flag, meter_point = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, flag, [(t, True)])
    ingest(tenant_a, device, meter_point, [(t, 1.0)])
    with pytest.raises(CommandError, match="only a numeric point"):
        mark(tenant_a, device, flag)
    with pytest.raises(CommandError, match="has no point"):
        mark(tenant_b, device, meter_point)
    with pytest.raises(CommandError, match="must be a UUID"):
        call_command("point", "set", "--tenant", "x", "--device", "y", "--point", "z")


def test_another_tenants_counter_stays_closed(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    lo = start_hour()
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, meter(lo, lo + timedelta(hours=1), seed=2))
    mark(tenant_a, device, point)
    refresh_all_tiers(lo, lo + timedelta(hours=1))
    ask: dict[str, Any] = {
        "device_id": device,
        "point_id": point,
        "agg": "5m",
        **window(lo, lo + timedelta(hours=1)),
    }
    assert get(tenant_b, **ask).status_code == 404
    series_id = series_id_of(tenant_a, device, point)
    with tenant_context(tenant_b.id) as cur:
        for tier in ("1m", "5m", "1h"):
            cur.execute(
                f"SELECT count(*) FROM ts_read_counter_{tier}(%s, %s, %s, 1000)",
                [series_id, lo, lo + timedelta(hours=1)],
            )
            assert cur.fetchone() == (0,), tier
        cur.execute("SELECT has_function_privilege('ts_set_counter(bigint, boolean)', 'EXECUTE')")
        assert cur.fetchone() == (False,)


@pytest.mark.parametrize("tier", ["1m", "5m", "1h"])
def test_a_late_meter_reading_is_in_the_next_read_of_delta(
    tenant_a: TenantFixture, tier: str
) -> None:
    # Read-your-writes for counters (69_state_fresh.sql): a late reading (a reset the gateway
    # buffered) and an overwrite into materialized buckets change delta in the very next read,
    # before the refresh; materialized_only keeps the stored deltas until then.
    lo = start_hour()
    hi = lo + timedelta(hours=3)
    samples = meter(lo, hi, seed=7)
    device, point = uuid.uuid4(), uuid.uuid4()
    ingest(tenant_a, device, point, samples)
    mark(tenant_a, device, point)
    refresh_all_tiers(lo, hi)
    stored = body(tenant_a, device_id=device, point_id=point, agg=tier, **window(lo, hi))["data"]
    late = [
        (lo + timedelta(minutes=65, seconds=30), 0.5),
        (samples[len(samples) // 2][0], samples[len(samples) // 2][1] + 40),
    ]
    ingest(tenant_a, device, point, late)
    now = dict(samples) | dict(late)
    wanted = recompute(sorted(now.items()), lambda t: floor(t, WIDTH[tier]))
    rows = body(tenant_a, device_id=device, point_id=point, agg=tier, **window(lo, hi))["data"]
    assert rows != stored
    for row in rows:
        assert row["delta"] == pytest.approx(wanted[datetime.fromisoformat(row["ts"])], abs=1e-6)
    kept = body(
        tenant_a,
        device_id=device,
        point_id=point,
        agg=tier,
        materialized_only="true",
        **window(lo, hi),
    )["data"]
    assert kept == stored
