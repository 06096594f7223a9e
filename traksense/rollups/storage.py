"""Bytes on disk per tier, and what a tier will hold once its retention is full (issue 18):
`traksense storage` and the status page. The figures come from ts_storage() (67_storage.sql)."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection


def held_days(keep_days: int, after_days: int, partition_days: float) -> tuple[float, float]:
    """Average days of data a tier holds uncompressed and compressed. A tier is compressed and
    dropped a whole partition at a time: data waits for its partition to end `after_days` ago
    (0: never compressed), and goes with it once it ended `keep_days` ago (0: kept forever,
    returned as infinity)."""
    keep = keep_days + partition_days / 2 if keep_days else float("inf")
    if not after_days:
        return keep, 0.0
    plain = min(keep, after_days + partition_days / 2)
    return plain, keep - plain


@dataclass(frozen=True)
class TierStorage:
    tier: str
    rows: int  # both forms; the uncompressed part is the planner's estimate
    bytes: int
    compressed_rows: int
    compressed_bytes: int
    rows_per_day: float | None  # from the newest partition that has ended
    projected_bytes: float | None  # at this rate, retention full, at the current bytes per row

    @property
    def bytes_per_row(self) -> float | None:
        return self.bytes / self.rows if self.rows else None

    @property
    def compressed_share(self) -> float | None:
        return self.compressed_rows / self.rows if self.rows else None


def tier_storage() -> list[TierStorage]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM ts_storage()")
        rows = cursor.fetchall()
    out = []
    for tier, partition_days, rows_plain, bytes_plain, rows_z, bytes_z, per_day in rows:
        plain_row = bytes_plain / rows_plain if rows_plain else None
        # Before anything is compressed, the compressed days are counted at the uncompressed
        # size: an upper bound.
        packed_row = bytes_z / rows_z if rows_z else plain_row
        projected = None
        if per_day is not None and plain_row is not None and packed_row is not None:
            plain_days, packed_days = held_days(
                settings.RETENTION_DAYS[tier],
                settings.COMPRESS_AFTER_DAYS.get(tier, 0),
                partition_days,
            )
            projected = per_day * (plain_days * plain_row + packed_days * packed_row)
        out.append(
            TierStorage(
                tier=tier,
                rows=int(rows_plain) + int(rows_z),
                bytes=int(bytes_plain) + int(bytes_z),
                compressed_rows=int(rows_z),
                compressed_bytes=int(bytes_z),
                rows_per_day=per_day,
                projected_bytes=projected,
            )
        )
    return out
