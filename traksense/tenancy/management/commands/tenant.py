"""traksense tenant create NAME | tenant list | tenant limits ID [--ingest-rate N]
[--read-concurrency N]"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from traksense.tenancy.models import Tenant


def _count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise CommandError(f"expected a whole number >= 0, got {raw!r}") from None
    if value < 0:
        raise CommandError(f"expected a whole number >= 0 (0: no limit), got {value}")
    return value


class Command(BaseCommand):
    help = "Create or list tenants, or show and set a tenant's limits."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a tenant and print its id")
        create.add_argument("name")
        sub.add_parser("list", help="list tenants")
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
        else:
            for tenant in Tenant.objects.order_by("created_at"):
                self.stdout.write(f"{tenant.id}  {tenant.name}")

    def _limits(self, options: dict[str, Any]) -> None:
        try:
            tenant_id = uuid.UUID(options["id"])
        except ValueError:
            raise CommandError(f"ID must be a tenant id (uuid), got {options['id']!r}") from None
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
