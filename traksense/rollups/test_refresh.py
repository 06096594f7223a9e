"""Golden tests of the refresh engine: bucket edges, recompute of exactly the touched buckets,
deletes, the hierarchy 1m → 5m → 1h, windows and the SQL procedure."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from traksense.conftest import TenantFixture
from traksense.rollups.refresh import RefreshProgress, refresh, refresh_all
from traksense.rollups.test_refresh_support import (
    assert_equal_aggregates,
    ingest,
    materialize_until,
    materialized,
    new_id,
    pending,
    reference,
    series_id,
)

T0 = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)
US = dt.timedelta(microseconds=1)

pytestmark = pytest.mark.django_db


def minute(m: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=m)


def test_a_sample_at_the_start_of_a_minute_belongs_to_that_minute(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    ingest(tenant_a.id, [(d, p, minute(1), 10.0), (d, p, minute(1) - US, 20.0)])
    refresh("1m")
    sid = series_id(tenant_a.id, d, p)
    assert materialized("1m") == {
        (sid, minute(0)): (20.0, 20.0, 20.0, 1),
        (sid, minute(1)): (10.0, 10.0, 10.0, 1),
    }


def test_five_minute_and_hour_edges_split_buckets_exactly(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    hour = T0 + dt.timedelta(hours=1)
    ingest(
        tenant_a.id,
        [
            (d, p, minute(5) - US, 1.0),
            (d, p, minute(5), 2.0),
            (d, p, hour - US, 3.0),
            (d, p, hour, 4.0),
        ],
    )
    refresh_all()
    sid = series_id(tenant_a.id, d, p)
    assert materialized("5m") == {
        (sid, minute(0)): (1.0, 1.0, 1.0, 1),
        (sid, minute(5)): (2.0, 2.0, 2.0, 1),
        (sid, minute(55)): (3.0, 3.0, 3.0, 1),
        (sid, hour): (4.0, 4.0, 4.0, 1),
    }
    assert materialized("1h") == {
        (sid, T0): (6.0, 1.0, 3.0, 3),
        (sid, hour): (4.0, 4.0, 4.0, 1),
    }


def test_samples_in_the_same_minute_of_different_series_stay_apart(
    tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    d, p1, p2 = new_id(), new_id(), new_id()
    ingest(tenant_a.id, [(d, p1, minute(0), 1.0), (d, p2, minute(0) + US, 5.0)])
    ingest(tenant_b.id, [(d, p1, minute(0) + dt.timedelta(seconds=30), 7.0)])
    refresh("1m")
    assert materialized("1m") == {
        (series_id(tenant_a.id, d, p1), minute(0)): (1.0, 1.0, 1.0, 1),
        (series_id(tenant_a.id, d, p2), minute(0)): (5.0, 5.0, 5.0, 1),
        (series_id(tenant_b.id, d, p1), minute(0)): (7.0, 7.0, 7.0, 1),
    }


def test_sum_min_max_and_count_of_a_minute(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    values = [3.5, -1.25, 8.0, 0.0]
    ingest(
        tenant_a.id, [(d, p, minute(2) + dt.timedelta(seconds=i), v) for i, v in enumerate(values)]
    )
    stats = refresh("1m")
    assert (stats.buckets, stats.rows_written, stats.rows_deleted) == (1, 1, 0)
    assert materialized("1m") == {(series_id(tenant_a.id, d, p), minute(2)): (10.25, -1.25, 8.0, 4)}


def test_an_overwrite_and_a_delete_recompute_only_their_buckets(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    ingest(tenant_a.id, [(d, p, minute(m), float(m)) for m in range(10)])
    refresh_all()
    assert pending("1m") == []

    ingest(tenant_a.id, [(d, p, minute(3), 30.0)])  # overwrite
    sid = series_id(tenant_a.id, d, p)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM ts_measure WHERE series_id = %s AND ts = %s", [sid, minute(7)])
    assert pending("1m") == [(sid, minute(3)), (sid, minute(7))]

    stats = refresh("1m")
    assert (stats.buckets, stats.rows_written, stats.rows_deleted) == (2, 1, 1)
    # The 5m buckets of both changes, once each.
    assert pending("5m") == [(sid, minute(0)), (sid, minute(5))]
    refresh_all()
    for tier in ("1m", "5m", "1h"):
        assert_equal_aggregates(materialized(tier), reference(tier))


def test_a_duplicate_sample_changes_nothing_downstream(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    ingest(tenant_a.id, [(d, p, minute(1), 1.0)])
    refresh_all()
    ingest(tenant_a.id, [(d, p, minute(1), 1.0)])
    stats = refresh("1m")
    assert stats.rows_written == 0
    assert pending("5m") == []


def test_refresh_leaves_incomplete_and_later_buckets_to_the_next_refresh(
    tenant_a: TenantFixture,
) -> None:
    d, p = new_id(), new_id()
    ingest(tenant_a.id, [(d, p, minute(0), 1.0), (d, p, minute(9), 2.0)])
    stats = refresh("1m", end=minute(5) + dt.timedelta(seconds=30))
    assert stats.window_end == minute(5)  # floored: only complete buckets
    sid = series_id(tenant_a.id, d, p)
    assert list(materialized("1m")) == [(sid, minute(0))]
    # Above the invalidation threshold nothing is logged: the next refresh range-scans it.
    assert pending("1m") == []
    refresh("1m")
    assert sorted(materialized("1m")) == [(sid, minute(0)), (sid, minute(9))]


def test_a_tier_never_refreshes_past_its_source_watermark(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    ingest(tenant_a.id, [(d, p, minute(m), 1.0) for m in range(12)])
    refresh("1m", end=minute(7))
    stats = refresh("5m")
    assert stats.window_end == minute(5)
    assert [b for _, b in materialized("5m")] == [minute(0)]


def test_a_window_start_leaves_older_invalidations_pending(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    old = T0 - dt.timedelta(days=20)
    materialize_until(minute(1))  # both samples below the watermark: logged late data
    ingest(tenant_a.id, [(d, p, old, 1.0), (d, p, minute(0), 2.0)])
    refresh("1m", start=T0 - dt.timedelta(days=1))
    sid = series_id(tenant_a.id, d, p)
    assert pending("1m") == [(sid, old)]
    refresh("1m")  # no start: every pending invalidation, a backfill of any age
    assert pending("1m") == []
    assert sorted(materialized("1m")) == [(sid, old), (sid, minute(0))]


def test_a_long_backfill_runs_in_chunks_with_progress(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    materialize_until(T0 + dt.timedelta(days=3))  # a backfill below the watermark: logged
    ingest(tenant_a.id, [(d, p, T0 + dt.timedelta(minutes=7 * i), float(i)) for i in range(400)])
    seen: list[RefreshProgress] = []
    stats = refresh("1m", end=T0 + dt.timedelta(days=3), progress=seen.append, chunk_keys=100)
    assert stats.chunks == len(seen) == 4
    assert [s.done for s in seen] == [1, 2, 3, 4]
    assert all(s.total == 4 for s in seen)
    assert stats.buckets == 400
    refresh_all()
    for tier in ("1m", "5m", "1h"):
        assert_equal_aggregates(materialized(tier), reference(tier))


def test_many_dense_keys_use_one_range_scan(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    materialize_until(minute(300))
    ingest(tenant_a.id, [(d, p, minute(m), float(m)) for m in range(300)])
    assert refresh("1m", end=minute(300)).strategies == ["range"]
    assert_equal_aggregates(materialized("1m"), reference("1m"))


def test_a_few_keys_use_index_lookups(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    materialize_until(minute(2))
    ingest(tenant_a.id, [(d, p, minute(1), 1.0)])
    assert refresh("1m", end=minute(2)).strategies == ["lookup"]


def test_new_data_above_the_threshold_is_not_logged_and_one_range_scan_materializes_it(
    tenant_a: TenantFixture,
) -> None:
    d, p = new_id(), new_id()
    materialize_until(minute(0))
    ingest(tenant_a.id, [(d, p, minute(m), float(m)) for m in range(30)])
    assert pending("1m") == []
    stats = refresh("1m", end=minute(30))
    assert stats.strategies == ["region"] and stats.rows_written == 30
    assert_equal_aggregates(materialized("1m"), reference("1m"))


def test_writes_on_either_side_of_the_threshold_are_logged_or_range_scanned(
    tenant_a: TenantFixture,
) -> None:
    d, p = new_id(), new_id()
    refresh("1m", end=minute(10))
    ingest(
        tenant_a.id,
        [
            (d, p, minute(10) - dt.timedelta(microseconds=1), 1.0),  # the last bucket below
            (d, p, minute(10), 2.0),  # the first bucket at the threshold
        ],
    )
    sid = series_id(tenant_a.id, d, p)
    assert pending("1m") == [(sid, minute(9))]
    refresh("1m", end=minute(11))
    assert materialized("1m") == {
        (sid, minute(9)): (1.0, 1.0, 1.0, 1),
        (sid, minute(10)): (2.0, 2.0, 2.0, 1),
    }


def test_a_late_write_below_the_threshold_is_logged_and_recomputed(
    tenant_a: TenantFixture,
) -> None:
    d, p = new_id(), new_id()
    ingest(tenant_a.id, [(d, p, minute(m), 1.0) for m in range(10)])
    refresh("1m", end=minute(10))
    ingest(tenant_a.id, [(d, p, minute(3) + dt.timedelta(seconds=5), 9.0)])  # late, below it
    sid = series_id(tenant_a.id, d, p)
    assert pending("1m") == [(sid, minute(3))]
    refresh("1m", end=minute(10))
    assert materialized("1m")[(sid, minute(3))] == (10.0, 1.0, 9.0, 2)


def test_the_watermark_moves_with_the_refresh(tenant_a: TenantFixture) -> None:
    refresh("1m", end=minute(3))
    with connection.cursor() as cursor:
        cursor.execute("SELECT watermark FROM ts_tier WHERE tier = '1m'")
        assert cursor.fetchone()[0] == minute(3)
        refresh("1m", end=minute(1))  # never moves back
        cursor.execute("SELECT watermark FROM ts_tier WHERE tier = '1m'")
        assert cursor.fetchone()[0] == minute(3)


def test_the_sql_procedure_refreshes_like_the_python_function(tenant_a: TenantFixture) -> None:
    d, p = new_id(), new_id()
    ingest(tenant_a.id, [(d, p, minute(m), float(m * m)) for m in range(120)])
    with connection.cursor() as cursor:
        cursor.execute("CALL ts_refresh('1m', NULL, %s)", [minute(120)])
        cursor.execute("CALL ts_refresh('5m', %s, %s)", [T0, minute(120)])
        cursor.execute("CALL ts_refresh('1h')")
    for tier in ("1m", "5m", "1h"):
        assert_equal_aggregates(materialized(tier), reference(tier))


def test_an_unknown_tier_is_refused(db: None) -> None:
    with pytest.raises(ValueError, match="unknown rollup tier"):
        refresh("2m")
