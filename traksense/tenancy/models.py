from __future__ import annotations

import uuid

from django.db import models

DEFAULT_INGEST_RATE = 20_000
DEFAULT_READ_CONCURRENCY = 8


class Tenant(models.Model):
    """A customer. Every series, sample and API key belongs to exactly one."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # Per-tenant limits, enforced in PostgreSQL across every process (15_tenant_binding.sql);
    # 0 means no limit. Defaults in docs/tenancy.md; `traksense tenant limits ID` changes them.
    ingest_rate = models.PositiveIntegerField(
        default=DEFAULT_INGEST_RATE, help_text="ingest samples per second (bucket of 10 s)"
    )
    read_concurrency = models.PositiveIntegerField(
        default=DEFAULT_READ_CONCURRENCY, help_text="reads running at once"
    )

    # The IANA zone of calendar buckets (agg=1d|1w|1mo) when a read names none; "" means UTC.
    # `traksense tenant set ID --tz ZONE` checks it against PostgreSQL's tz database.
    tz = models.CharField(max_length=64, default="", blank=True, help_text="IANA time zone")

    class Meta:
        db_table = "tenant"

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


class ApiKey(models.Model):
    """A bearer key of one tenant. Only a SHA-256 of the key is stored: keys are 256-bit random
    tokens, so a fast hash is enough (no password stretching needed) and lookups stay O(1)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16, help_text="first characters, to recognise a key")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A read-only key reads (GET, and POST /data/query) and never writes: its transactions are
    # READ ONLY (ts_bind_key), and write endpoints answer 403.
    read_only = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    # Noted by the web process at most once a minute per key (keys.note_use).
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "api_key"

    def __str__(self) -> str:
        return f"{self.prefix}… of {self.tenant_id}"
