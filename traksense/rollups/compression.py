"""Compression of old rollup partitions (and, optionally, raw ones): Python picks the
partitions, SQL moves them.

Each due partition (entirely older than now - COMPRESS_AFTER_DAYS[tier], holding uncompressed
rows) is compressed by ts_compress_partition(). A partition of more than COMPRESS_CHUNK_ROWS rows
(the planner's estimate) moves in chunks of series, each chunk in its own transaction, then a
last transaction empties it: the locks a compression holds (the tier's refresh lock; for raw,
the day's lock that late ingest waits for) are held for a chunk, seconds, rather than for the
whole partition, which at a million series is most of an hour. A killed job leaves every series
either compressed or untouched and the next run carries on. The stored form and
its trade-offs: docs/compression.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from traksense.rollups.jobs import db_now


@dataclass
class CompressStats:
    tier: str
    cutoff: datetime
    partitions: list[str] = field(default_factory=list)
    rows: int = 0
    segments: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    state_rows: int = 0  # state rows (boolean, text, counters) held compressed in those partitions

    @property
    def ratio(self) -> float | None:
        return self.bytes_before / self.bytes_after if self.bytes_after else None

    def summary(self) -> str:
        if not self.partitions:
            return f"no {self.tier} partition ending before {self.cutoff} to compress"
        ratio = f"{self.ratio:.1f}x" if self.ratio else "n/a"
        state = f", and {self.state_rows} state rows" if self.state_rows else ""
        return (
            f"compressed {len(self.partitions)} {self.tier} partition(s) ending before "
            f"{self.cutoff}: {self.rows} rows in {self.segments} segments, "
            f"{self.bytes_before} -> {self.bytes_after} bytes ({ratio}){state}, "
            f"{self.seconds:.2f} s"
        )


def compress_tier(tier: str, older_than_days: int | None = None) -> CompressStats:
    """Compress every partition of `tier` that ends before now - older_than_days (default: the
    COMPRESS_<TIER>_AFTER_DAYS setting). Raw partitions only when raw compression is on."""
    if tier == "raw" and "raw" not in settings.COMPRESS_AFTER_DAYS:
        raise ValueError("raw compression is off: set COMPRESS_RAW_AFTER_DAYS to turn it on")
    days = settings.COMPRESS_AFTER_DAYS[tier] if older_than_days is None else older_than_days
    stats = CompressStats(tier, db_now() - timedelta(days=days))
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts_compression_candidates(%s, %s)", [tier, stats.cutoff])
        names = [row[0] for row in cursor.fetchall()]
    for name in names:
        row = _compress_partition(name)
        stats.partitions.append(name)
        stats.rows += row[0]
        stats.segments += row[1]
        stats.bytes_before += row[2]
        stats.bytes_after += row[3]
        stats.state_rows += _state_rows(name)
    stats.seconds = time.monotonic() - started
    return stats


def chunk_bounds(lo: int, hi: int, chunks: int) -> list[tuple[int | None, int | None]]:
    """[lo, hi] split into `chunks` series ranges [a, b), the first open below and the last
    open above, so that together they cover every series id."""
    step = max(1, -(-(hi - lo + 1) // chunks))
    cuts = list(range(lo + step, hi + 1, step))
    edges: list[int | None] = [None, *cuts, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _compress_partition(name: str) -> tuple[int, int, int, int]:
    """Rows, segments, bytes before and after of one partition's compression."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT greatest(reltuples, 0)::bigint, pg_total_relation_size(oid) FROM pg_class"
            " WHERE oid = %s::regclass",
            [name],
        )
        estimate, size = cursor.fetchone()
        chunks = -(-int(estimate) // settings.COMPRESS_CHUNK_ROWS)
        ranges: list[tuple[int | None, int | None]] = []
        if chunks > 1:
            cursor.execute(
                f"SELECT min(series_id), max(series_id) FROM {connection.ops.quote_name(name)}"
            )
            lo, hi = cursor.fetchone()
            if lo is not None:
                ranges = chunk_bounds(lo, hi, chunks)
    rows = segments = 0
    for series_lo, series_hi in ranges:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT rows_compressed, segments FROM ts_compress_partition(%s, %s, %s)",
                [name, series_lo, series_hi],
            )
            moved, parts = cursor.fetchone()
        rows += int(moved)
        segments += int(parts)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT * FROM ts_compress_partition(%s, NULL, NULL, %s, %s)",
            [name, rows if ranges else None, size if ranges else None],
        )
        last = cursor.fetchone()
    assert last is not None
    return int(last[0]), segments + int(last[1]), int(last[2]), int(last[3])


def _state_rows(name: str) -> int:
    """The state rows a compressed partition's sibling holds (58_state_compress.sql)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(sum(z.n_rows), 0) FROM ts_partition p"
            " JOIN ts_state_z z ON z.tier = p.tier AND z.seg_start = p.lo WHERE p.name = %s",
            [name],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class TierStats:
    """One row of ts_compression_stats."""

    tier: str
    partitions: int
    segments: int
    rows: int
    bytes_before: int
    bytes_after: int
    bytes_per_row_before: float | None
    bytes_per_row_after: float | None
    ratio: float | None
    compress_seconds: float | None


def tier_stats() -> list[TierStats]:
    """Bytes before and after compression per rollup tier, and raw once compressed (the
    ts_compression_stats view)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tier, partitions, segments, rows_compressed, bytes_before, bytes_after,"
            " bytes_per_row_before, bytes_per_row_after, ratio, compress_seconds"
            " FROM ts_compression_stats"
        )
        rows = cursor.fetchall()
    return [
        TierStats(
            tier=r[0],
            partitions=int(r[1]),
            segments=int(r[2]),
            rows=int(r[3]),
            bytes_before=int(r[4]),
            bytes_after=int(r[5]),
            bytes_per_row_before=None if r[6] is None else float(r[6]),
            bytes_per_row_after=None if r[7] is None else float(r[7]),
            ratio=None if r[8] is None else float(r[8]),
            compress_seconds=None if r[9] is None else float(r[9]),
        )
        for r in rows
    ]
