"""API keys: minted once, stored hashed, resolved to a tenant."""

from __future__ import annotations

import hashlib
import secrets

from django.utils import timezone

from traksense.tenancy.models import ApiKey, Tenant

KEY_PREFIX = "tsk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(tenant: Tenant) -> str:
    """Mint a key for `tenant` and return it; it cannot be shown again."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    ApiKey.objects.create(tenant=tenant, prefix=key[:12], key_hash=hash_key(key))
    return key


def plausible_key(key: str) -> bool:
    """Whether `key` could be one of ours (checked before any database work)."""
    return key.startswith(KEY_PREFIX) and len(key) <= 200


def revoke_key(key: str) -> bool:
    return bool(
        ApiKey.objects.filter(key_hash=hash_key(key), revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    )
