"""traksense tenant create NAME | tenant list"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from traksense.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Create or list tenants. `tenant create NAME` prints only the new tenant id."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a tenant and print its id")
        create.add_argument("name")
        sub.add_parser("list", help="list tenants")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            name = options["name"].strip()
            if not name:
                raise CommandError("tenant name must not be empty")
            tenant = Tenant.objects.create(name=name)
            self.stdout.write(str(tenant.id))
        else:
            for tenant in Tenant.objects.order_by("created_at"):
                self.stdout.write(f"{tenant.id}  {tenant.name}")
