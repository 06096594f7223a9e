"""traksense stats: bytes before and after compression, per rollup tier."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from traksense.rollups.compression import tier_stats


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


class Command(BaseCommand):
    help = "Compression per rollup tier: rows compressed, bytes before/after, bytes per row, ratio."

    def handle(self, *args: Any, **options: Any) -> None:
        header = (
            f"{'tier':<5} {'partitions':>10} {'rows':>12} {'bytes before':>14} "
            f"{'bytes after':>13} {'B/row before':>12} {'B/row after':>11} {'ratio':>7}"
        )
        self.stdout.write(header)
        for s in tier_stats():
            self.stdout.write(
                f"{s.tier:<5} {s.partitions:>10} {s.rows:>12} {s.bytes_before:>14} "
                f"{s.bytes_after:>13} {_num(s.bytes_per_row_before, '.1f'):>12} "
                f"{_num(s.bytes_per_row_after, '.1f'):>11} {_num(s.ratio, '.1f'):>7}"
            )
