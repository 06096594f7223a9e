"""Refresh of a rollup tier: Python orchestrates, the set-based work is SQL (50_rollups.sql).

`refresh()` asks the database for the effective window (complete buckets, capped at the source
tier's watermark) and for chunks of bounded pending work, then runs each chunk in its own
transaction through ts_refresh_chunk(), which claims, recomputes, writes, invalidates the next
tier and moves the watermark atomically. A crash loses at most the chunk in flight, whose claimed
invalidations come back with its rollback. `CALL ts_refresh(...)` does the same from psql.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections, transaction

from traksense.rollups.tiers import TIER_ORDER, get_tier

# Pending invalidations per chunk: a chunk of a full materialization of the reference workload
# (12 series) spans about 3 days of raw samples.
CHUNK_KEYS = 50_000


@dataclass
class RefreshStats:
    """What one refresh did. window_start None means "every pending invalidation"."""

    tier: str
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    chunks: int = 0
    invalidations: int = 0
    buckets: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    seconds: float = 0.0
    strategies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RefreshProgress:
    """Reported after each chunk: `done` of `total` chunks, the chunk's bounds, totals so far."""

    done: int
    total: int
    chunk_start: dt.datetime | None
    chunk_end: dt.datetime
    stats: RefreshStats


ProgressCallback = Callable[[RefreshProgress], None]

# -infinity travels as NULL: psycopg cannot represent it as a datetime.
_FINITE = "CASE WHEN isfinite({0}) THEN {0} END"


def refresh(
    tier: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    progress: ProgressCallback | None = None,
    using: str = "default",
    chunk_keys: int = CHUNK_KEYS,
) -> RefreshStats:
    """Refresh `tier` ('1m', '5m' or '1h') over [start, end).

    start None processes every pending invalidation below the end (backfills of any age reach
    the tier; buckets whose source expired are protected in SQL). end None is the policy end,
    now minus one bucket. Two refreshes of one tier serialise chunk by chunk on an advisory lock.
    """
    get_tier(tier)  # a clear ValueError for an unknown tier, before touching the database
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must carry a UTC offset, got {value.isoformat()}")
    began = time.perf_counter()
    stats = RefreshStats(tier=tier)
    with connections[using].cursor() as cursor:
        # One round trip: the effective window and its chunks.
        cursor.execute(
            f"SELECT {_FINITE.format('b.window_start')}, {_FINITE.format('b.window_end')},"
            f" {_FINITE.format('c.chunk_start')}, c.chunk_end"
            " FROM ts_refresh_bounds(%s, %s, %s) b"
            " LEFT JOIN LATERAL ts_refresh_chunks(%s, b.window_start, b.window_end, %s) c"
            "   ON b.window_start < b.window_end"
            " ORDER BY c.chunk_start NULLS FIRST",
            [tier, start, end, tier, chunk_keys],
        )
        rows = cursor.fetchall()
    stats.window_start, stats.window_end = rows[0][0], rows[0][1]
    chunks: list[tuple[dt.datetime | None, dt.datetime]] = [
        (lo, hi) for _, _, lo, hi in rows if hi is not None
    ]

    for done, (lo, hi) in enumerate(chunks, start=1):
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute(
                "SELECT invalidations, buckets, rows_written, rows_deleted, strategy"
                " FROM ts_refresh_chunk(%s, coalesce(%s, '-infinity'::timestamptz), %s)",
                [tier, lo, hi],
            )
            invalidations, buckets, written, deleted, strategy = cursor.fetchone()
        stats.chunks += 1
        stats.invalidations += invalidations
        stats.buckets += buckets
        stats.rows_written += written
        stats.rows_deleted += deleted
        stats.strategies.append(strategy)
        stats.seconds = time.perf_counter() - began
        if progress is not None:
            progress(RefreshProgress(done, len(chunks), lo, hi, stats))
    stats.seconds = time.perf_counter() - began
    return stats


def refresh_all(using: str = "default") -> list[RefreshStats]:
    """Refresh every tier up to its policy end, finer tiers first (what tests and the bench
    use to bring everything up to date)."""
    return [refresh(tier, using=using) for tier in TIER_ORDER]
