"""Compression of old rollup partitions (and, optionally, raw ones): Python picks the
partitions, SQL moves them.

Each due partition (entirely older than now - COMPRESS_AFTER_DAYS[tier], holding uncompressed
rows) is compressed by ts_compress_partition() in its own transaction, so a killed job leaves
every partition either compressed or untouched and the next run carries on. The stored form and
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

    @property
    def ratio(self) -> float | None:
        return self.bytes_before / self.bytes_after if self.bytes_after else None

    def summary(self) -> str:
        if not self.partitions:
            return f"no {self.tier} partition ending before {self.cutoff} to compress"
        ratio = f"{self.ratio:.1f}x" if self.ratio else "n/a"
        return (
            f"compressed {len(self.partitions)} {self.tier} partition(s) ending before "
            f"{self.cutoff}: {self.rows} rows in {self.segments} segments, "
            f"{self.bytes_before} -> {self.bytes_after} bytes ({ratio}), {self.seconds:.2f} s"
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
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT * FROM ts_compress_partition(%s)", [name])
            row = cursor.fetchone()
        assert row is not None
        stats.partitions.append(name)
        stats.rows += int(row[0])
        stats.segments += int(row[1])
        stats.bytes_before += int(row[2])
        stats.bytes_after += int(row[3])
    stats.seconds = time.monotonic() - started
    return stats


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
