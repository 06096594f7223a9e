"""traksense refresh --tier 1m|5m|1h [--start ISO --end ISO]: refresh one tier now."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from traksense.rollups.refresh import CHUNK_KEYS, RefreshProgress, refresh
from traksense.rollups.tiers import TIERS


def parse_instant(name: str, raw: str) -> dt.datetime:
    """An ISO-8601 instant with an explicit offset: a naive time has no single meaning."""
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(f"--{name} must be an ISO-8601 timestamp, got {raw!r}") from None
    if value.tzinfo is None:
        raise CommandError(
            f"--{name} {raw!r} has no UTC offset; write it as e.g. {raw}Z or {raw}+00:00"
        )
    return value


def _instant(value: dt.datetime | None) -> str:
    return "-infinity" if value is None else value.isoformat()


class Command(BaseCommand):
    help = (
        "Refresh a rollup tier now. Without --start every pending invalidation below the end is "
        "processed; without --end the end is now minus one bucket."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tier", required=True, choices=sorted(TIERS))
        parser.add_argument("--start", help="window start, ISO-8601 with offset (inclusive)")
        parser.add_argument("--end", help="window end, ISO-8601 with offset (exclusive)")
        parser.add_argument(
            "--chunk-keys",
            type=int,
            default=CHUNK_KEYS,
            help=f"pending invalidations per transaction (default {CHUNK_KEYS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        start = parse_instant("start", options["start"]) if options["start"] else None
        end = parse_instant("end", options["end"]) if options["end"] else None
        if start is not None and end is not None and start >= end:
            raise CommandError("--start must be before --end")

        def report(p: RefreshProgress) -> None:
            if p.total > 1:
                self.stdout.write(
                    f"chunk {p.done}/{p.total} up to {p.chunk_end.isoformat()}:"
                    f" {p.stats.buckets} buckets so far, {p.stats.seconds:.1f} s"
                )

        if options["chunk_keys"] < 1:
            raise CommandError("--chunk-keys must be at least 1")
        stats = refresh(
            options["tier"], start, end, progress=report, chunk_keys=options["chunk_keys"]
        )
        self.stdout.write(
            f"refreshed {stats.tier} [{_instant(stats.window_start)},"
            f" {_instant(stats.window_end) if stats.window_end else 'nothing complete'}):"
            f" {stats.buckets} buckets recomputed, {stats.rows_written} rows written,"
            f" {stats.rows_deleted} rows deleted, {stats.chunks} chunks, {stats.seconds:.3f} s"
        )
