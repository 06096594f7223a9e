"""API keys: minted once, stored hashed, listed, revoked; their last use noted.

Only the SHA-256 of a key is stored. Keys are 256-bit random tokens, so a fast hash is enough
(no password stretching), and a key is checked by looking its hash up (ts_bind_key, in the
database): the timing of that lookup depends on the hash of what the caller sent, which tells
them nothing about any stored key's hash, let alone a key. Nothing compares a presented key or
hash byte by byte anywhere else.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import datetime

from django.db import connections
from django.utils import timezone

from traksense.tenancy import audit
from traksense.tenancy.models import ApiKey, Tenant

KEY_PREFIX = "tsk_"
# last_used_at is noted at most this often per key and process (one UPDATE on the owner's
# connection), so that it costs nothing per request.
NOTE_USE_EVERY_SECONDS = 60.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(tenant: Tenant, read_only: bool = False, expires_at: datetime | None = None) -> str:
    """Mint a key for `tenant` and return it; it cannot be shown again."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("the expiry must be in the future")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey.objects.create(
        tenant=tenant,
        prefix=key[:12],
        key_hash=hash_key(key),
        read_only=read_only,
        expires_at=expires_at,
    )
    audit.key_created(tenant.id, row.id, row.prefix, read_only)
    return key


def plausible_key(key: str) -> bool:
    """Whether `key` could be one of ours (checked before any database work)."""
    return key.startswith(KEY_PREFIX) and len(key) <= 200


def revoke(key_id: int) -> ApiKey | None:
    """Revoke the live key `key_id`; the key, or None when no live key has that id."""
    row = ApiKey.objects.filter(id=key_id, revoked_at__isnull=True).first()
    if row is None:
        return None
    ApiKey.objects.filter(id=row.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
    audit.key_revoked(row.tenant_id, row.id, row.prefix)
    return row


def revoke_key(key: str) -> bool:
    """Revoke a key given in full (the key itself, not its id)."""
    row = ApiKey.objects.filter(key_hash=hash_key(key), revoked_at__isnull=True).first()
    return row is not None and revoke(row.id) is not None


_noted: dict[int, float] = {}
_noted_lock = threading.Lock()


def note_use(key_id: int) -> None:
    """Record that key `key_id` was just used (api_key.last_used_at), at most once a minute per
    process: on the owner's connection, since the web role may not write api_key."""
    now = time.monotonic()
    with _noted_lock:
        if now - _noted.get(key_id, -NOTE_USE_EVERY_SECONDS) < NOTE_USE_EVERY_SECONDS:
            return
        _noted[key_id] = now
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "UPDATE api_key SET last_used_at = now() WHERE id = %s"
            " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
            [key_id],
        )
