"""What the status page shows, read from PostgreSQL as the owner role (never inside a tenant).

Every relation that another part of the service owns is looked up with to_regclass() first, so
the page still answers while a subsystem is not installed yet (e.g. before the jobs migration).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from traksense.rollups.storage import TierStorage, tier_storage

TIER_ORDER = ("raw", "1m", "5m", "1h")

_JOB_COLUMNS = """name, schedule, status, last_start, last_finish, last_duration, next_run,
    last_error, last_error_at, runs, failures"""

# ts_jobs (the view) knows about crashed runs; the bare table is the fallback.
_JOBS_FROM_VIEW = f"SELECT {_JOB_COLUMNS} FROM ts_jobs ORDER BY name"
_JOBS_FROM_TABLE = f"""
SELECT {_JOB_COLUMNS.replace("status", "coalesce(last_status, 'never run') AS status", 1)}
FROM ts_job ORDER BY name
"""

_TIERS_SQL = """
SELECT t.tier,
       t.relation,
       CASE WHEN isfinite(t.watermark) THEN t.watermark END,
       CASE WHEN isfinite(t.watermark) THEN extract(epoch FROM now() - t.watermark) END,
       coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint,
       coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint,
       count(p.name),
       count(p.compressed_at)
FROM ts_tier t
LEFT JOIN ts_partition p ON p.tier = t.tier
LEFT JOIN pg_class c ON c.oid = to_regclass(p.name)
GROUP BY t.tier, t.relation, t.watermark
"""


@dataclass(frozen=True)
class Job:
    name: str
    schedule: timedelta | None
    status: str
    last_start: datetime | None
    last_finish: datetime | None
    last_duration: timedelta | None
    next_run: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    runs: int
    failures: int


@dataclass(frozen=True)
class Tier:
    tier: str
    relation: str
    watermark: datetime | None
    lag_seconds: float | None  # None: never refreshed (or raw, which has no watermark)
    bytes: int
    rows: int
    partitions: int
    compressed_partitions: int


@dataclass(frozen=True)
class Table:
    """A relation shown as it is (e.g. ts_compression_stats, whose columns are not ours)."""

    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    jobs: list[Job] | None  # None: the scheduler's table is not installed
    tiers: list[Tier]
    compression: Table | None  # None: ts_compression_stats is not installed
    storage: list[TierStorage] | None  # None: ts_storage() is not installed


def _exists(cursor: Any, relation: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [relation])
    row = cursor.fetchone()
    return bool(row and row[0])


def read_snapshot() -> Snapshot:
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        now = cursor.fetchone()[0]
        jobs: list[Job] | None = None
        if _exists(cursor, "ts_jobs"):
            cursor.execute(_JOBS_FROM_VIEW)
            jobs = [Job(*row) for row in cursor.fetchall()]
        elif _exists(cursor, "ts_job"):
            cursor.execute(_JOBS_FROM_TABLE)
            jobs = [Job(*row) for row in cursor.fetchall()]
        cursor.execute(_TIERS_SQL)
        tiers = [
            Tier(
                tier=tier,
                relation=relation,
                watermark=watermark if tier != "raw" else None,
                lag_seconds=None if lag is None or tier == "raw" else float(lag),
                bytes=int(nbytes),
                rows=int(nrows),
                partitions=int(parts),
                compressed_partitions=int(compressed),
            )
            for tier, relation, watermark, lag, nbytes, nrows, parts, compressed in (
                cursor.fetchall()
            )
        ]
        tiers.sort(key=lambda t: TIER_ORDER.index(t.tier) if t.tier in TIER_ORDER else 99)
        compression = None
        if _exists(cursor, "ts_compression_stats"):
            cursor.execute("SELECT * FROM ts_compression_stats")
            columns = [d.name for d in cursor.description]
            compression = Table(columns, [list(row) for row in cursor.fetchall()])
        cursor.execute("SELECT to_regprocedure('ts_storage()') IS NOT NULL")
        storage = tier_storage() if cursor.fetchone()[0] else None
    return Snapshot(now=now, jobs=jobs, tiers=tiers, compression=compression, storage=storage)
