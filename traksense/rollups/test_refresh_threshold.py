"""The invalidation threshold at fleet shape: many series, one sample per series per minute,
written while refreshes move the threshold through the very minutes being written (the race
TimescaleDB's invalidation threshold exists for), with late samples, overwrites and deletes
below it. Nothing is missed: after a final refresh every tier equals the recompute from raw."""

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

BASE = dt.datetime(2026, 3, 9, 23, 45, tzinfo=dt.UTC)  # crosses an hour and a day partition
MINUTES = 40
SERIES_PER_WRITER = 300
BATCH = 150


class Frontier:
    """The newest minute every writer has started on: refreshes chase it."""

    def __init__(self, writers: int) -> None:
        self.minutes = [0] * writers
        self.lock = threading.Lock()

    def reached(self, writer: int, minute: int) -> None:
        with self.lock:
            self.minutes[writer] = minute

    def newest(self) -> int:
        with self.lock:
            return max(self.minutes)


def writer(n: int, tenant: TenantFixture, frontier: Frontier, errors: list[BaseException]) -> None:
    rng = random.Random(n)
    series = [(new_id(), new_id()) for _ in range(SERIES_PER_WRITER)]
    try:
        for minute in range(MINUTES):
            frontier.reached(n, minute)
            at = BASE + dt.timedelta(minutes=minute)
            samples = [
                (d, p, at + dt.timedelta(seconds=rng.randrange(60)), rng.randrange(-400, 400) / 4)
                for d, p in series
            ]
            for lo in range(0, len(samples), BATCH):
                batch = samples[lo : lo + BATCH]
                if minute > 2:  # late samples and overwrites below the frontier
                    for _ in range(rng.randrange(4)):
                        d, p = rng.choice(series)
                        late = BASE + dt.timedelta(minutes=rng.randrange(minute - 1))
                        batch.append((d, p, late, rng.randrange(-400, 400) / 4))
                ingest(tenant.id, batch)
            if minute % 5 == 4:  # an owner's delete of a few samples of an earlier minute
                with connection.cursor() as cursor:
                    cursor.execute(
                        "DELETE FROM ts_measure WHERE ts >= %s AND ts < %s AND series_id %% 7 = 0",
                        [at - dt.timedelta(minutes=3), at - dt.timedelta(minutes=2)],
                    )
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)
    finally:
        connection.close()


def refresher(frontier: Frontier, stop: threading.Event, errors: list[BaseException]) -> None:
    rng = random.Random(99)
    try:
        while not stop.is_set():
            # The window ends inside or right after the minutes being written.
            end = BASE + dt.timedelta(minutes=frontier.newest() + rng.choice([0, 1, 1, 2]))
            refresh("1m", end=end)
            refresh("5m", end=end)
            refresh("1h", end=end)
    except BaseException as exc:
        errors.append(exc)
    finally:
        connection.close()


@pytest.mark.usefixtures("committed_db")
def test_fleet_writes_racing_the_threshold_all_reach_every_tier(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()
    frontier = Frontier(2)
    writers = [
        threading.Thread(target=writer, args=(n, t, frontier, errors))
        for n, t in enumerate([tenant_a, tenant_b])
    ]
    loops = [threading.Thread(target=refresher, args=(frontier, stop, errors)) for _ in range(2)]
    for t in loops + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in loops:
        t.join()
    assert errors == []

    refresh_all()
    assert pending("1m") == pending("5m") == pending("1h") == []
    for tier in ("1m", "5m", "1h"):
        assert_equal_aggregates(materialized(tier), reference(tier))
