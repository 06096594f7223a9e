"""Retention: drop whole time partitions past a tier's retention, never DELETE rows.

For each partition of the tier whose upper bound is older than now - RETENTION_DAYS[tier], in
time order:

1. if the next tier (built from this one) still has pending invalidations inside the partition's
   range, refresh that tier over the range first, so that no change of source data is lost with
   the source (a backfill into an old range reaches the rollups before its raw data goes);
2. in one transaction: lock the parent table and the partition, re-check that nothing is pending
   (a write may have landed after step 1), DROP the partition, delete its ts_partition row and
   raise ts_tier.expired_before to its upper bound.

A partition that still has pending invalidations after a few refreshes, or whose lock is not
granted within LOCK_TIMEOUT (a long query is reading the table), is kept for the next run; a
kept partition stops the run there, because expired_before must never pass data still stored.
DROP fires no triggers, so dropping creates no invalidations: expiry is not a change of data.
Invalidations of the dropped tier's own buckets are left alone: they record source changes and
belong to the refresh engine, which never rewrites a bucket from an expired source.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.backends.utils import CursorWrapper
from psycopg import sql

from traksense.rollups.jobs import db_now

log = logging.getLogger(__name__)

# How long a drop waits for the table's lock. DROP of a partition locks the parent table too, and
# a waiting exclusive lock queues every later reader behind it: better to skip a run than stall.
LOCK_TIMEOUT = "5s"
# Refresh-then-drop attempts per partition when writes keep landing in it.
ATTEMPTS = 3

_RETRYABLE = ("55P03", "40P01")  # lock_not_available, deadlock_detected


@dataclass
class RetentionStats:
    tier: str
    cutoff: datetime | None  # None: this tier is kept forever
    dropped: list[str] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # partition -> why it was kept
    refreshed: list[str] = field(default_factory=list)  # next-tier refreshes done before drops
    state_dropped: int = 0  # state partitions dropped (ts_state_expire)

    def summary(self) -> str:
        if self.cutoff is None:
            return f"{self.tier} kept forever (retention 0)"
        text = f"dropped {len(self.dropped)} {self.tier} partition(s) ending before {self.cutoff}"
        if self.refreshed:
            text += f", refreshed {len(self.refreshed)} range(s) of the next tier first"
        if self.kept:
            text += "; kept " + ", ".join(f"{n} ({why})" for n, why in self.kept.items())
        return text


class _Pending(Exception):
    """Invalidations landed in the partition's range after its refresh."""


def retention_of(tier: str) -> timedelta | None:
    days: int = settings.RETENTION_DAYS[tier]
    return timedelta(days=days) if days > 0 else None


def expire(tier: str, now: datetime | None = None) -> RetentionStats:
    """Drop the partitions of `tier` past its retention (see the module docstring)."""
    keep_for = retention_of(tier)
    if keep_for is None:
        return RetentionStats(tier, None)
    now = now or db_now()
    stats = RetentionStats(tier, now - keep_for)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.relation, CASE WHEN isfinite(t.expired_before) THEN t.expired_before END,"
            " n.tier FROM ts_tier t"
            " LEFT JOIN ts_tier n ON n.source_tier = t.tier WHERE t.tier = %s",
            [tier],
        )
        row = cursor.fetchone()
        if row is None:
            raise ValueError(f"unknown tier {tier!r}")
        parent, expired_before, next_tier = row
        cursor.execute(
            "SELECT name, lo, hi FROM ts_partition WHERE tier = %s AND hi <= %s ORDER BY lo",
            [tier, stats.cutoff],
        )
        candidates = cursor.fetchall()

    # The next tier needs the range only while it keeps it itself.
    next_keep = retention_of(next_tier) if next_tier else None
    for name, lo, hi in candidates:
        watched = next_tier if next_tier and (next_keep is None or hi > now - next_keep) else None
        why = ""
        for _attempt in range(ATTEMPTS):
            if watched and _pending(watched, lo, hi):
                from traksense.rollups.refresh import refresh

                refresh(watched, lo, hi)
                stats.refreshed.append(name)
            try:
                _drop(tier, parent, name, lo, hi, watched)
            except _Pending:
                why = f"{watched} invalidations still pending"
                continue
            except OperationalError as exc:
                if getattr(exc.__cause__, "sqlstate", None) not in _RETRYABLE:
                    raise
                why = f"busy: {exc}".strip()
                break
            stats.dropped.append(name)
            log.info("retention: dropped %s [%s, %s)", name, lo, hi)
            why = ""
            break
        if not why:
            expired_before = hi if expired_before is None else max(expired_before, hi)
            continue
        stats.kept[name] = why
        if expired_before is None or hi > expired_before:
            # Dropping a later partition would move expired_before past data still stored.
            break
    if tier != "raw":
        _expire_state(tier, stats)
    return stats


def _expire_state(tier: str, stats: RetentionStats) -> None:
    """The tier's state partitions past its expired_before, in a transaction of their own
    (ts_state_expire, 54_state_refresh.sql, says why); a lock not granted leaves them to the
    next run."""
    try:
        with _bounded_locks() as cursor:
            cursor.execute("SELECT ts_state_expire(%s)", [tier])
            stats.state_dropped = int(cursor.fetchone()[0])
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) not in _RETRYABLE:
            raise
        stats.kept[f"ts_state_{tier}"] = f"busy: {exc}".strip()


def _pending(tier: str, lo: datetime, hi: datetime) -> bool:
    """Whether `tier` still needs source data in [lo, hi): logged invalidations there, or the
    source holding data above the tier's watermark (writes above its invalidation threshold are
    not logged, so that region is all pending; see traksense/db/sql/51_invalidation.sql)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM ts_invalidation"
            " WHERE tier = %s AND bucket >= %s AND bucket < %s)"
            " OR (SELECT t.watermark < %s"
            "     AND ts_source_has_data(t.source_tier, greatest(t.watermark, %s), %s)"
            "     FROM ts_tier t WHERE t.tier = %s)",
            [tier, lo, hi, hi, lo, hi, tier],
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def _drop(
    tier: str, parent: str, name: str, lo: datetime, hi: datetime, watched: str | None
) -> None:
    with _bounded_locks() as cursor:
        # Parent first, as writers take it: they wait behind us instead of deadlocking with us,
        # and once we hold it no write into the partition is in flight.
        cursor.execute(
            sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(parent))
        )
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        exists = cursor.fetchone()[0]
        if exists:
            cursor.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(name))
            )
        if watched and _pending(watched, lo, hi):
            raise _Pending(name)
        if exists:
            cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
        # Its compressed rows (57_compress.sql) go with it, in the same transaction.
        cursor.execute("SELECT ts_drop_compressed(%s)", [name])
        cursor.execute("DELETE FROM ts_partition WHERE name = %s", [name])
        cursor.execute(
            "UPDATE ts_tier SET expired_before = greatest(expired_before, %s) WHERE tier = %s",
            [hi, tier],
        )


@contextmanager
def _bounded_locks() -> Iterator[CursorWrapper]:
    """A transaction whose lock waits give up after LOCK_TIMEOUT; yields its cursor."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        previous = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [LOCK_TIMEOUT])
        yield cursor
        # SET LOCAL outlives a savepoint that is released (a caller's outer transaction).
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


def ensure_partitions_ahead(tier: str, widths: int) -> int:
    """Create the partitions of `tier` from now to `widths` partition widths ahead; returns how
    many were missing."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT ts_ensure_partitions(t.tier, now(), now() + t.partition_width * %s)"
            " FROM ts_tier t WHERE t.tier = %s",
            [widths, tier],
        )
        row = cursor.fetchone()
    if row is None:
        raise ValueError(f"unknown tier {tier!r}")
    return int(row[0] or 0)
