"""traksense tenant create NAME | tenant list | tenant set ID [--tz ZONE] | tenant limits ID
[--ingest-rate N] [--read-concurrency N]"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from traksense.tenancy.models import Tenant


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise CommandError(f"expected a whole number >= 0, got {raw!r}") from None
    if value < 0:
        raise CommandError(f"expected a whole number >= 0 (0: no limit), got {value}")
    return value


def _tenant_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise CommandError(f"ID must be a tenant id (uuid), got {raw!r}") from None


class Command(BaseCommand):
    help = "Create or list tenants, show and change a tenant's settings and limits."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a tenant and print its id")
        create.add_argument("name")
        sub.add_parser("list", help="list tenants")
        tenant_set = sub.add_parser("set", help="show a tenant's settings, or change them")
        tenant_set.add_argument("id", help="tenant id")
        tenant_set.add_argument(
            "--tz",
            help="IANA time zone of calendar buckets (agg=1d|1w|1mo), e.g. America/Sao_Paulo; "
            "'' for UTC",
        )
        limits = sub.add_parser("limits", help="show a tenant's limits, or set them (0: no limit)")
        limits.add_argument("id", help="tenant id")
        limits.add_argument("--ingest-rate", help="ingest samples per second (10 s of burst)")
        limits.add_argument("--read-concurrency", help="reads running at once")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            name = options["name"].strip()
            if not name:
                raise CommandError("tenant name must not be empty")
            tenant = Tenant.objects.create(name=name)
            self.stdout.write(str(tenant.id))
        elif options["action"] == "limits":
            self._limits(options)
        elif options["action"] == "set":
            self._set(options)
        else:
            for tenant in Tenant.objects.order_by("created_at"):
                self.stdout.write(f"{tenant.id}  {tenant.name}")

    def _set(self, options: dict[str, Any]) -> None:
        tenant_id = _tenant_id(options["id"])
        if options["tz"] is not None:
            tz = options["tz"].strip()
            if tz:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT ts_valid_tz(%s)", [tz])
                    if not cursor.fetchone()[0]:
                        raise CommandError(
                            f"--tz must be an IANA time zone PostgreSQL knows, such as "
                            f"Europe/Berlin or America/Sao_Paulo; got {tz!r}"
                        )
            if not Tenant.objects.filter(id=tenant_id).update(tz=tz):
                raise CommandError(f"no tenant {tenant_id}")
        tenant = Tenant.objects.filter(id=tenant_id).first()
        if tenant is None:
            raise CommandError(f"no tenant {tenant_id}")
        self.stdout.write(f"name\t{tenant.name}")
        self.stdout.write(f"tz\t{tenant.tz or 'UTC (not set)'}")

    def _limits(self, options: dict[str, Any]) -> None:
        tenant_id = _tenant_id(options["id"])
        changes: dict[str, int] = {}
        if options["ingest_rate"] is not None:
            changes["ingest_rate"] = _count(options["ingest_rate"])
        if options["read_concurrency"] is not None:
            changes["read_concurrency"] = _count(options["read_concurrency"])
        if changes and not Tenant.objects.filter(id=tenant_id).update(**changes):
            raise CommandError(f"no tenant {tenant_id}")
        tenant = Tenant.objects.filter(id=tenant_id).first()
        if tenant is None:
            raise CommandError(f"no tenant {tenant_id}")
        for name, value in (
            ("ingest_rate", tenant.ingest_rate),
            ("read_concurrency", tenant.read_concurrency),
        ):
            self.stdout.write(f"{name}\t{value if value else 'unlimited'}")
