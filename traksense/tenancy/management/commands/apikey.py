"""traksense apikey create --tenant ID | apikey revoke KEY"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from traksense.tenancy.keys import create_key, revoke_key
from traksense.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Mint or revoke API keys. `apikey create --tenant ID` prints only the key, once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="mint a key for a tenant and print it")
        create.add_argument("--tenant", required=True, help="tenant id")
        revoke = sub.add_parser("revoke", help="revoke a key")
        revoke.add_argument("key")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "create":
            try:
                tenant_id = uuid.UUID(options["tenant"])
            except ValueError:
                raise CommandError(
                    f"--tenant must be a tenant id (uuid), got {options['tenant']!r}"
                ) from None
            tenant = Tenant.objects.filter(id=tenant_id).first()
            if tenant is None:
                raise CommandError(f"no tenant {tenant_id}")
            self.stdout.write(create_key(tenant))
        elif not revoke_key(options["key"]):
            raise CommandError("no live key matches")
