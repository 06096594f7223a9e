"""Retention: whole partitions dropped past a tier's retention, and no rollup data lost."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections

from traksense.conftest import TenantFixture
from traksense.rollups import retention
from traksense.rollups.jobs import db_now
from traksense.rollups.refresh import refresh
from traksense.rollups.retention import ensure_partitions_ahead, expire
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    materialized,
    new_id,
    pending,
    reference,
)

DAY = dt.timedelta(days=1)


def _partitions(tier: str) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, lo, hi FROM ts_partition WHERE tier = %s", [tier])
        return {name: (lo, hi) for name, lo, hi in cursor.fetchall()}


def _table_exists(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def _expired_before(tier: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CASE WHEN isfinite(expired_before) THEN expired_before END"
            " FROM ts_tier WHERE tier = %s",
            [tier],
        )
        return cursor.fetchone()[0]


def _ensure(tier: str, start: dt.datetime, end: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts_ensure_partitions(%s, %s, %s)", [tier, start, end])


def _invalidations() -> list[tuple[str, int, dt.datetime]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tier, series_id, bucket FROM ts_invalidation ORDER BY 1, 2, 3")
        return list(cursor.fetchall())


def _samples(start: dt.datetime, minutes: int) -> list[tuple[str, str, dt.datetime, float]]:
    device, point = new_id(), new_id()
    return [
        (device, point, start + dt.timedelta(minutes=m, seconds=s), float(m * 10 + s))
        for m in range(minutes)
        for s in (0, 20, 40)
    ]


def test_retention_drops_only_the_partitions_past_retention(db: None) -> None:
    now = db_now()
    _ensure("raw", now - 20 * DAY, now - 10 * DAY)
    cutoff = now - 14 * DAY
    before = _partitions("raw")

    stats = expire("raw", now=now)

    after = _partitions("raw")
    expired = {name for name, (_lo, hi) in before.items() if hi <= cutoff}
    assert expired and set(stats.dropped) == expired
    assert set(after) == set(before) - expired
    for name in expired:
        assert not _table_exists(name)
    for name, (_lo, hi) in after.items():
        assert hi > cutoff and _table_exists(name)
    assert _expired_before("raw") == max(before[name][1] for name in expired)
    assert stats.kept == {}


def test_every_tier_keeps_its_own_retention(db: None) -> None:
    now = db_now()
    for tier, days in (("1m", 365), ("5m", 730), ("1h", 1825)):
        _ensure(tier, now - (days + 200) * DAY, now - (days - 200) * DAY)
        cutoff = now - days * DAY

        stats = expire(tier, now=now)

        assert stats.dropped, tier
        assert all(hi > cutoff for _lo, hi in _partitions(tier).values()), tier
        assert any(lo < cutoff for lo, _hi in _partitions(tier).values()), tier


def test_a_retention_of_zero_keeps_the_tier_forever(db: None, settings: Any) -> None:
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "raw": 0}
    now = db_now()
    _ensure("raw", now - 40 * DAY, now - 30 * DAY)
    before = _partitions("raw")

    stats = expire("raw", now=now)

    assert stats.dropped == [] and stats.cutoff is None
    assert "kept forever" in stats.summary()
    assert _partitions("raw") == before


def test_dropping_expired_partitions_creates_no_invalidation_and_keeps_rollups(
    db: None, tenant_a: TenantFixture
) -> None:
    now = db_now()
    ingest(tenant_a.id, _samples(now - 16 * DAY, 30))
    for tier in ("1m", "5m", "1h"):
        refresh(tier, None, now)
    rollups = {tier: materialized(tier) for tier in ("1m", "5m", "1h")}
    assert rollups["1m"] and not pending("1m")
    invalidations = _invalidations()

    stats = expire("raw", now=now)

    assert stats.dropped and stats.refreshed == []
    assert _invalidations() == invalidations
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ts_measure WHERE ts < %s", [now - 14 * DAY])
        assert cursor.fetchone()[0] == 0
    for tier in ("1m", "5m", "1h"):
        refresh(tier, None, now)
        assert materialized(tier) == rollups[tier], tier


def test_pending_1m_invalidations_of_an_expiring_raw_partition_reach_the_1m_tier_first(
    db: None, tenant_a: TenantFixture
) -> None:
    now = db_now()
    # A device uploads buffered readings from 20 days ago: ingest creates the old partition on
    # demand; nothing has refreshed them yet when retention comes.
    ingest(tenant_a.id, _samples(now - 20 * DAY, 45))
    expected = reference("1m")
    assert not materialized("1m")  # new data above the threshold: unlogged, not yet refreshed
    backfilled = [n for n, (lo, hi) in _partitions("raw").items() if lo <= now - 20 * DAY < hi]

    stats = expire("raw", now=now)

    assert backfilled and set(backfilled) <= set(stats.dropped)
    assert set(backfilled) <= set(stats.refreshed)
    assert not _table_exists(backfilled[0])
    assert_equal_aggregates(materialized("1m"), expected)
    assert pending("1m") == []
    # ... and the coarser tiers get them from 1m, which still holds them.
    for tier in ("5m", "1h"):
        refresh(tier, None, now)
        assert materialized(tier)


def test_a_backfill_below_expired_before_is_dropped_on_the_next_run_after_its_refresh(
    db: None, tenant_a: TenantFixture
) -> None:
    now = db_now()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ts_tier SET expired_before = %s WHERE tier = 'raw'", [now - 15 * DAY]
        )
    ingest(tenant_a.id, _samples(now - 30 * DAY, 10))
    expected = reference("1m")

    stats = expire("raw", now=now)

    assert stats.dropped and stats.refreshed
    assert_equal_aggregates(materialized("1m"), expected)
    assert _expired_before("raw") >= now - 15 * DAY  # never moved back


def test_a_partition_whose_invalidations_stay_pending_is_kept_and_stops_the_run(
    db: None, tenant_a: TenantFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = db_now()
    _ensure("raw", now - 25 * DAY, now - 15 * DAY)
    ingest(tenant_a.id, _samples(now - 22 * DAY, 5))
    stuck = next(n for n, (lo, hi) in _partitions("raw").items() if lo <= now - 22 * DAY < hi)
    stuck_lo = _partitions("raw")[stuck][0]
    later = {n for n, (lo, _hi) in _partitions("raw").items() if lo > now - 22 * DAY}
    # A refresh that cannot materialize them (it raced with writers, or it is broken).
    monkeypatch.setattr("traksense.rollups.refresh.refresh", lambda *a, **k: None)

    stats = expire("raw", now=now)

    assert stuck in stats.kept and "pending" in stats.kept[stuck]
    assert _table_exists(stuck) and later <= set(_partitions("raw"))
    # expired_before never passes data still stored.
    assert _expired_before("raw") is None or _expired_before("raw") <= stuck_lo
    assert "kept" in stats.summary()


def test_a_partition_locked_by_a_long_reader_is_kept_for_the_next_run(
    committed_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = db_now()
    _ensure("raw", now - 18 * DAY, now - 16 * DAY)
    mine = {n for n, (_lo, hi) in _partitions("raw").items() if hi <= now - 14 * DAY}
    monkeypatch.setattr(retention, "LOCK_TIMEOUT", "200ms")
    reader = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        reader.set_autocommit(False)
        with reader.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM ts_measure")  # holds its lock until commit

            stats = expire("raw", now=now)

            assert stats.dropped == []
            assert [why.startswith("busy") for why in stats.kept.values()] == [True]
        reader.rollback()
    finally:
        reader.close()

    stats = expire("raw", now=now)

    assert mine <= set(stats.dropped)
    assert not any(_table_exists(n) for n in mine)


def test_the_retention_job_creates_the_next_partitions_ahead(db: None) -> None:
    now = db_now()

    ensure_partitions_ahead("raw", 2)
    ensure_partitions_ahead("1h", 2)

    for tier, width in (("raw", DAY), ("1h", 28 * DAY)):  # (1h: 0008_fleet_storage's width)
        covered = sorted(_partitions(tier).values())
        for instant in (now, now + width, now + 2 * width - dt.timedelta(seconds=1)):
            assert any(lo <= instant < hi for lo, hi in covered), (tier, instant)
    assert ensure_partitions_ahead("raw", 2) == 0
