"""traksense apikey create --tenant ID [--read-only] [--expires ISO] | list --tenant ID |
revoke ID"""

from __future__ import annotations

import uuid
from argparse import ArgumentParser
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from traksense.tenancy.keys import create_key, revoke
from traksense.tenancy.models import ApiKey, Tenant


def _tenant(raw: str) -> Tenant:
    try:
        tenant_id = uuid.UUID(raw)
    except ValueError:
        raise CommandError(f"--tenant must be a tenant id (uuid), got {raw!r}") from None
    tenant = Tenant.objects.filter(id=tenant_id).first()
    if tenant is None:
        raise CommandError(f"no tenant {tenant_id}")
    return tenant


def _expiry(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise CommandError(
            f"--expires must be an ISO-8601 time with an offset, got {raw!r}"
        ) from None
    if when.tzinfo is None:
        raise CommandError(f"--expires needs an offset (e.g. {raw}+00:00 or {raw}Z)")
    if when <= timezone.now():
        raise CommandError(f"--expires {raw} is in the past")
    return when


def _iso(when: datetime | None) -> str:
    return when.isoformat(timespec="seconds") if when is not None else "-"


class Command(BaseCommand):
    help = "Mint, list or revoke API keys. `apikey create --tenant ID` prints only the key, once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="mint a key for a tenant and print it")
        create.add_argument("--tenant", required=True, help="tenant id")
        create.add_argument(
            "--read-only", action="store_true", help="the key reads only (GET; writes get 403)"
        )
        create.add_argument("--expires", help="ISO-8601 time with an offset after which it fails")
        listing = sub.add_parser("list", help="list a tenant's keys (never the keys themselves)")
        listing.add_argument("--tenant", required=True, help="tenant id")
        remove = sub.add_parser("revoke", help="revoke a key by its id (from `apikey list`)")
        remove.add_argument("id", help="key id")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            tenant = _tenant(options["tenant"])
            expires = _expiry(options["expires"])
            self.stdout.write(
                create_key(tenant, read_only=options["read_only"], expires_at=expires)
            )
        elif action == "list":
            tenant = _tenant(options["tenant"])
            self.stdout.write("id\tprefix\tscope\tcreated\texpires\tlast_used\tstate")
            now = timezone.now()
            for key in ApiKey.objects.filter(tenant=tenant).order_by("created_at", "id"):
                state = (
                    "revoked"
                    if key.revoked_at is not None
                    else "expired"
                    if key.expires_at is not None and key.expires_at <= now
                    else "live"
                )
                scope = "read" if key.read_only else "read-write"
                self.stdout.write(
                    f"{key.id}\t{key.prefix}\t{scope}\t{_iso(key.created_at)}\t"
                    f"{_iso(key.expires_at)}\t{_iso(key.last_used_at)}\t{state}"
                )
        else:
            raw = options["id"]
            if not raw.isdigit():
                raise CommandError(f"ID must be a key id from `apikey list`, got {raw!r}")
            revoked = revoke(int(raw))
            if revoked is None:
                raise CommandError(f"no live key with id {raw}")
            self.stdout.write(
                f"revoked key {revoked.id} ({revoked.prefix}…) of {revoked.tenant_id}"
            )
