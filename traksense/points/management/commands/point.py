"""traksense point set --tenant ID --device ID --point ID --counter | --no-counter"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction


def _uuid(raw: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise CommandError(f"--{name} must be a UUID, got {raw!r}") from None


class Command(BaseCommand):
    help = "Show or change what a point is: mark a numeric point as a counter (meter)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        point_set = sub.add_parser(
            "set", help="mark a numeric point as a counter (its rollups then carry delta)"
        )
        for name in ("tenant", "device", "point"):
            point_set.add_argument(f"--{name}", required=True, help=f"{name} id")
        mark = point_set.add_mutually_exclusive_group()
        mark.add_argument(
            "--counter",
            dest="counter",
            action="store_true",
            default=None,
            help="a running total (energy meter): buckets carry the increase, resets included",
        )
        mark.add_argument("--no-counter", dest="counter", action="store_false")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = _uuid(options["tenant"], "tenant")
        device = _uuid(options["device"], "device")
        point = _uuid(options["point"], "point")
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT series_id, kind, counter FROM ts_series"
                " WHERE tenant_id = %s AND device_id = %s AND point_id = %s",
                [tenant, device, point],
            )
            row = cursor.fetchone()
            if row is None:
                raise CommandError(
                    f"tenant {tenant} has no point {point} on device {device} "
                    "(a point exists once a sample of it was written)"
                )
            series_id, kind, counter = row
            if options["counter"] is not None and options["counter"] != counter:
                if kind != "numeric":
                    raise CommandError(
                        f"this point holds {kind} values: only a numeric point can be a counter"
                    )
                cursor.execute("SELECT ts_set_counter(%s, %s)", [series_id, options["counter"]])
                (changed,) = cursor.fetchone()
                counter = options["counter"]
                what = (
                    f"{changed} one-minute buckets to recompute at the next refresh"
                    if counter
                    else f"{changed} delta rows removed"
                )
                self.stderr.write(f"point {'marked' if counter else 'unmarked'}: {what}")
        self.stdout.write(f"kind\t{kind}")
        self.stdout.write(f"counter\t{'yes' if counter else 'no'}")
