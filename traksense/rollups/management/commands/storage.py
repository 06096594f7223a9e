"""traksense storage [--json]: rows, bytes, bytes per row, compressed share and projected size
per tier (docs/capacity.md)."""

from __future__ import annotations

from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandParser

from traksense.core.humanize import human_size
from traksense.rollups.storage import tier_storage


class Command(BaseCommand):
    help = (
        "Per tier: rows (uncompressed ones estimated by the planner), bytes, bytes per row,"
        " compressed share, rows a day, and the size the tier reaches at that rate once its"
        " retention is full."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the figures as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        tiers = tier_storage()
        if options["json"]:
            payload = {
                "tiers": [
                    {
                        "tier": t.tier,
                        "rows": t.rows,
                        "bytes": t.bytes,
                        "bytes_per_row": t.bytes_per_row,
                        "compressed_rows": t.compressed_rows,
                        "compressed_bytes": t.compressed_bytes,
                        "compressed_share": t.compressed_share,
                        "rows_per_day": t.rows_per_day,
                        "projected_bytes": None
                        if t.projected_bytes in (None, float("inf"))
                        else t.projected_bytes,
                    }
                    for t in tiers
                ]
            }
            self.stdout.write(orjson.dumps(payload).decode())
            return
        self.stdout.write(
            f"{'tier':<5} {'rows':>14} {'bytes':>10} {'B/row':>7} {'compressed':>10}"
            f" {'rows/day':>14} {'projected':>10}"
        )
        for t in tiers:
            per_row = "-" if t.bytes_per_row is None else f"{t.bytes_per_row:.1f}"
            share = "-" if t.compressed_share is None else f"{t.compressed_share:.0%}"
            per_day = "-" if t.rows_per_day is None else f"{t.rows_per_day:,.0f}"
            self.stdout.write(
                f"{t.tier:<5} {t.rows:>14,} {human_size(t.bytes):>10} {per_row:>7} {share:>10}"
                f" {per_day:>14} {human_size(t.projected_bytes):>10}"
            )
        total = sum(t.projected_bytes or 0 for t in tiers)
        self.stdout.write(
            f"projected total at today's rates, every retention full: {human_size(total)}"
            " (uncompressed rows are the planner's estimates; docs/capacity.md)"
        )
