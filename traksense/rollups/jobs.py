"""The registry of scheduled jobs (DESIGN §5): what each one does and how often.

Eleven jobs: three per rollup tier, raw retention, and compress_raw unless raw compression is
turned off (COMPRESS_RAW_AFTER_DAYS=0). A job is a name, a schedule and a body that
does its work on Django's default connection, one transaction per step, and returns a one-line
result. How a job is claimed, recorded and scheduled is runner.py's and scheduler.py's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db import connection

from traksense.rollups.tiers import TIER_ORDER, TIERS

# Partitions kept ready ahead of time, per tier (the current one plus this many widths ahead),
# so that writes and refreshes of the near future never create a partition in their own path.
PARTITIONS_AHEAD = 2


@dataclass(frozen=True)
class JobResult:
    summary: str
    status: Literal["ok", "skipped"] = "ok"


@dataclass(frozen=True)
class Job:
    name: str
    schedule: timedelta
    description: str
    body: Callable[[], JobResult]


COMPRESS_SCHEDULE = timedelta(days=1)
RETENTION_SCHEDULE = timedelta(hours=1)


def db_now() -> datetime:
    """The database clock, not this host's: every worker and every window agree on it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        row = cursor.fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def refresh_job(tier: str) -> JobResult:
    from traksense.rollups.refresh import refresh

    # Up to the policy end; no start: every pending invalidation below the end is processed, so
    # a backfill older than the policy window reaches the tier too (docs/rollups.md).
    stats = refresh(tier, None, db_now() - TIERS[tier].end_lag)
    end = f"{stats.window_end:%Y-%m-%d %H:%M}Z" if stats.window_end else "nothing complete"
    return JobResult(
        f"up to {end}: {stats.buckets} bucket(s) recomputed from {stats.invalidations}"
        f" invalidation(s), {stats.rows_written} written, {stats.rows_deleted} deleted,"
        f" {stats.chunks} chunk(s)"
    )


def compress_job(tier: str) -> JobResult:
    from traksense.rollups.compression import compress_tier

    return JobResult(compress_tier(tier).summary())


def retention_job(tier: str) -> JobResult:
    from traksense.rollups.retention import ensure_partitions_ahead, expire

    created = ensure_partitions_ahead(tier, PARTITIONS_AHEAD)
    stats = expire(tier)
    return JobResult(f"{stats.summary()}; {created} partition(s) created ahead")


def span(value: timedelta) -> str:
    """A whole interval the way people write it: 14d, 5min, 1h."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _bind(body: Callable[[str], JobResult], tier: str) -> Callable[[], JobResult]:
    def run() -> JobResult:
        return body(tier)

    run.__name__ = f"{body.__name__}_{tier}"
    return run


def _registry() -> tuple[Job, ...]:
    jobs: list[Job] = []
    for tier in TIER_ORDER:
        policy = TIERS[tier]
        jobs.append(
            Job(
                f"refresh_{tier}",
                policy.schedule,
                f"materialize pending {tier} buckets up to now - {span(policy.end_lag)}"
                f" (policy window {span(policy.lookback)}; older backfills included)",
                _bind(refresh_job, tier),
            )
        )
    # compress_raw unless raw compression is off (COMPRESS_RAW_AFTER_DAYS=0).
    for tier in (*TIER_ORDER, *(("raw",) if "raw" in settings.COMPRESS_AFTER_DAYS else ())):
        jobs.append(
            Job(
                f"compress_{tier}",
                COMPRESS_SCHEDULE,
                f"compress {tier} partitions older than COMPRESS_{tier.upper()}_AFTER_DAYS",
                _bind(compress_job, tier),
            )
        )
    for tier in ("raw", *TIER_ORDER):
        jobs.append(
            Job(
                f"retention_{tier}",
                RETENTION_SCHEDULE,
                f"drop {tier} partitions past retention; create the next partitions ahead",
                _bind(retention_job, tier),
            )
        )
    return tuple(jobs)


# In the order the scheduler runs due jobs: finer tiers refresh before the coarser ones built
# from them, and retention runs after the refreshes it may depend on.
JOBS: tuple[Job, ...] = _registry()
JOBS_BY_NAME: dict[str, Job] = {job.name: job for job in JOBS}


def get_job(name: str) -> Job:
    """The registered job called `name`; KeyError names the valid ones."""
    try:
        return JOBS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown job {name!r}; valid jobs: {', '.join(JOBS_BY_NAME)}") from None
