"""Refresh of a rollup tier: Python orchestrates, the set-based work is SQL (52_refresh_window.sql,
53_refresh_chunk.sql).

`refresh()` asks the database, in one round trip (ts_refresh_window), for the effective window
(complete buckets, capped at the source tier's watermark); when little is pending (the steady
state), the same statement refreshes it. Otherwise the answer is the window cut into chunks of
bounded work, and each chunk runs in its own transaction through ts_refresh_chunk(), which claims,
recomputes, writes, invalidates the next tier and moves the watermark atomically. A crash loses
at most the chunks in flight, whose claimed invalidations come back with their rollback.

Many chunks (a first materialization, a backfill) run on WORKERS connections at once: chunks
claim disjoint ranges, so they never touch the same bucket; a coordinating transaction holds the
tier's refresh lock for the whole run, and each chunk moves the watermark only after the chunk
before it committed (see ts_refresh_chunk). `CALL ts_refresh(...)` does the same from psql, one
chunk after the other.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction

from traksense.rollups.tiers import TIER_ORDER, get_tier

# Pending invalidations per chunk: a chunk of a full materialization of the reference workload
# (12 series) spans about 3 days of raw samples.
CHUNK_KEYS = 50_000
# Up to this many pending invalidations, the refresh runs inside the first statement (one round
# trip, autocommit); more run in explicit transactions, which a killed worker leaves uncommitted.
INLINE_KEYS = 1_000
# Connections refreshing chunks of one refresh at once (the reference machine has 2 cores).
WORKERS = 2


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
Chunk = tuple[dt.datetime | None, dt.datetime]
# A chunk's result: invalidations, buckets, rows written, rows deleted, strategy.
ChunkResult = tuple[int, int, int, int, str]

# -infinity travels as NULL: psycopg cannot represent it as a datetime.
_FINITE = "CASE WHEN isfinite({0}) THEN {0} END"
_CHUNK = (
    "SELECT invalidations, buckets, rows_written, rows_deleted, strategy"
    " FROM ts_refresh_chunk(%s, coalesce(%s, '-infinity'::timestamptz), %s, %s, %s)"
)


def refresh(
    tier: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    progress: ProgressCallback | None = None,
    using: str = "default",
    chunk_keys: int = CHUNK_KEYS,
    workers: int = WORKERS,
) -> RefreshStats:
    """Refresh `tier` ('1m', '5m' or '1h') over [start, end).

    start None processes every pending invalidation below the end (backfills of any age reach
    the tier; buckets whose source expired are protected in SQL). end None is the policy end,
    now minus one bucket. Two refreshes of one tier serialise chunk by chunk on an advisory lock.
    Several chunks run on up to `workers` connections at once, unless the caller is inside a
    transaction (other connections would not see its data) or compressed ranges are involved.
    """
    get_tier(tier)  # a clear ValueError for an unknown tier, before touching the database
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must carry a UTC offset, got {value.isoformat()}")
    began = time.perf_counter()
    stats = RefreshStats(tier=tier)
    connection = connections[using]
    in_transaction = connection.in_atomic_block
    if not in_transaction:
        # The invalidation threshold moves in a transaction of its own, committed before the
        # refresh reads its source (51_invalidation.sql); inside a caller's transaction the
        # refresh moves it itself.
        with connection.cursor() as cursor:
            cursor.execute("SELECT ts_refresh_begin(%s, %s, %s)", [tier, start, end])
            window_end = cursor.fetchone()[0]
        if window_end is not None:
            end = window_end
    # One round trip, and one transaction in autocommit mode: the window, and either the single
    # chunk refreshed or the chunks to run. Inside a caller's transaction, a savepoint keeps
    # the all-or-nothing of the old per-chunk atomic block.
    with (
        transaction.atomic(using=using) if in_transaction else nullcontext(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            f"SELECT {_FINITE.format('w.window_start')}, {_FINITE.format('w.window_end')},"
            f" {_FINITE.format('w.chunk_start')}, w.chunk_end, w.invalidations, w.buckets,"
            " w.rows_written, w.rows_deleted, w.strategy"
            " FROM ts_refresh_window(%s, %s, %s, %s, %s) w"
            " ORDER BY w.chunk_start NULLS FIRST",
            [tier, start, end, chunk_keys, INLINE_KEYS],
        )
        rows = cursor.fetchall()
    stats.window_start, stats.window_end = rows[0][0], rows[0][1]
    chunks: list[Chunk] = [(row[2], row[3]) for row in rows if row[3] is not None]

    def record(done: int, chunk: Chunk, result: ChunkResult) -> None:
        invalidations, buckets, written, deleted, strategy = result
        stats.chunks += 1
        stats.invalidations += invalidations
        stats.buckets += buckets
        stats.rows_written += written
        stats.rows_deleted += deleted
        stats.strategies.append(strategy)
        stats.seconds = time.perf_counter() - began
        if progress is not None:
            progress(RefreshProgress(done, len(chunks), chunk[0], chunk[1], stats))

    if len(rows) == 1 and rows[0][4] is not None:  # the one chunk, already refreshed
        record(1, chunks[0], rows[0][4:9])
    elif (
        workers > 1
        and len(chunks) > 1
        and not in_transaction
        and _parallel_ready(tier, stats.window_start, stats.window_end, using)
    ):
        _run_parallel(tier, chunks, workers, using, record)
    else:
        for done, chunk in enumerate(chunks, start=1):
            with transaction.atomic(using=using), connection.cursor() as cursor:
                cursor.execute(_CHUNK, [tier, chunk[0], chunk[1], None, None])
                record(done, chunk, cursor.fetchone())
    stats.seconds = time.perf_counter() - began
    return stats


def _parallel_ready(
    tier: str, start: dt.datetime | None, end: dt.datetime | None, using: str
) -> bool:
    """Create the partitions a parallel run writes (committed before it starts); False when
    it must run sequentially."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT ts_refresh_parallel_ready(%s, coalesce(%s, '-infinity'::timestamptz),"
            " coalesce(%s, 'infinity'::timestamptz))",
            [tier, start, end],
        )
        return bool(cursor.fetchone()[0])


def _run_parallel(
    tier: str,
    chunks: list[Chunk],
    workers: int,
    using: str,
    record: Callable[[int, Chunk, ChunkResult], None],
) -> None:
    """Refresh `chunks` (in order, contiguous) on up to `workers` threads, each with its own
    connection and one transaction per chunk.

    This thread's transaction holds the tier's refresh lock until every chunk has ended, so no
    other refresh of the tier interleaves (chunks check that it is held by the run's backend).
    Chunk k+1 is handed out only once chunk k's transaction holds its in-flight lock, so that
    k+1 can always wait for k to end before it moves the watermark. Results are recorded here,
    in the order chunks finish. After a failure no further chunk is handed out (one handed out
    already may still run: it is atomic like any other, and the watermark waits for the failed
    chunk's range all the same); those running finish
    (each is atomic), and the first error is raised.
    """
    events: queue.SimpleQueue[tuple[str, int, Any]] = queue.SimpleQueue()
    tasks: queue.SimpleQueue[tuple[int, Chunk] | None] = queue.SimpleQueue()
    stop = threading.Event()

    def work(run: int) -> None:
        try:
            while (task := tasks.get()) is not None:
                seq, (lo, hi) = task
                if stop.is_set():
                    events.put(("skipped", seq, None))
                    continue
                try:
                    with transaction.atomic(using=using), connections[using].cursor() as cursor:
                        try:
                            cursor.execute(
                                "SELECT ts_refresh_chunk_begin(%s, %s, %s)", [tier, run, seq]
                            )
                            events.put(("begun", seq, None))
                            cursor.execute(_CHUNK, [tier, lo, hi, run, seq])
                            result = cursor.fetchone()
                        except BaseException:
                            # Before the rollback releases this chunk's locks: the next chunk,
                            # which waits for them, then finds the run stopped.
                            stop.set()
                            raise
                except BaseException as exc:  # reported to and raised by the coordinator
                    events.put(("failed", seq, exc))
                else:
                    events.put(("done", seq, result))
        finally:
            connections[using].close()

    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute("SELECT ts_refresh_lock(%s)", [tier])
        run = int(cursor.fetchone()[0])
        threads = [
            threading.Thread(target=work, args=(run,), name=f"refresh-{tier}-{n}")
            for n in range(min(workers, len(chunks)))
        ]
        for thread in threads:
            thread.start()
        error: BaseException | None = None
        handed, ended, done = 1, 0, 0
        tasks.put((1, chunks[0]))
        try:
            while ended < handed:
                kind, seq, payload = events.get()
                if kind == "begun":
                    if seq == handed and handed < len(chunks) and not stop.is_set():
                        handed += 1
                        tasks.put((handed, chunks[handed - 1]))
                    continue
                ended += 1
                if kind == "done":
                    done += 1
                    record(done, chunks[seq - 1], payload)
                elif kind == "failed" and error is None:
                    error = payload
        except BaseException:
            stop.set()
            raise
        finally:
            for _ in threads:
                tasks.put(None)
            for thread in threads:
                thread.join()
        if error is not None:
            raise error


def refresh_all(using: str = "default") -> list[RefreshStats]:
    """Refresh every tier up to its policy end, finer tiers first (what tests and the bench
    use to bring everything up to date)."""
    return [refresh(tier, using=using) for tier in TIER_ORDER]
