"""Writes that commit while refreshes run are never missed, and refreshes of one tier never
interleave: with real commits, writer threads and refresh loops, then one final refresh."""

from __future__ import annotations

import datetime as dt
import random
import threading

import pytest
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.rollups.refresh import refresh, refresh_all
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    materialized,
    new_id,
    pending,
    reference,
)

BASE = dt.datetime(2026, 3, 8, 23, 30, tzinfo=dt.UTC)


def writer(tenant: TenantFixture, seed: int, batches: int, errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    devices, points = [new_id() for _ in range(2)], [new_id() for _ in range(2)]
    try:
        for _ in range(batches):
            batch = [
                (
                    rng.choice(devices),
                    rng.choice(points),
                    # Late and out of order over one hour across midnight; repeats overwrite.
                    BASE + dt.timedelta(seconds=rng.randrange(3600)),
                    rng.randrange(-1000, 1000) / 4,
                )
                for _ in range(rng.randrange(1, 40))
            ]
            ingest(tenant.id, batch)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)
    finally:
        connection.close()


def refresher(tiers: list[str], stop: threading.Event, errors: list[BaseException]) -> None:
    try:
        while not stop.is_set():
            for tier in tiers:
                refresh(tier)
    except BaseException as exc:
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.usefixtures("committed_db")
def test_writes_committed_during_refreshes_all_reach_every_tier(
    tenant_a: TenantFixture, tenant_b: TenantFixture, outsider: TenantFixture
) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()
    writers = [
        threading.Thread(target=writer, args=(t, seed, 60, errors))
        for seed, t in enumerate([tenant_a, tenant_b, outsider])
    ]
    refreshers = [
        threading.Thread(target=refresher, args=(["1m"], stop, errors)),
        # A second loop on 1m (they must serialise) that also cascades to 5m and 1h.
        threading.Thread(target=refresher, args=(["1m", "5m", "1h"], stop, errors)),
    ]
    for t in refreshers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in refreshers:
        t.join()
    assert errors == []

    refresh_all()
    assert pending("1m") == pending("5m") == pending("1h") == []
    for tier in ("1m", "5m", "1h"):
        assert_equal_aggregates(materialized(tier), reference(tier))
